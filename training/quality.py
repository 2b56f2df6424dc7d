"""Quality of a feed-forward style network against per-image Gatys optimization with the same losses.

For each held-out photo and style: the style and content losses of (a) the photo itself, (b) the
network's output and (c) an image optimized directly for those losses (Gatys et al.), starting from the
photo. The headline number is style-loss(feed-forward) / style-loss(Gatys); lower is better, 1.0 means
the network matches per-image optimization.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

# Per-image optimization runs in the sidecar's render loop, the one loop of every iterative technique.
from stylecast.server.sidecar.optimize import gatys_transfer

from .data import list_images, load_rgb, to_tensor
from .losses import content_loss, style_loss
from .networks import STRIDE, one_hot
from .trainer import load_network, style_grams
from .vgg import CONTENT_LAYER, STYLE_LAYERS, VGGFeatures

log = logging.getLogger(__name__)


@dataclass
class QualityRow:
    photo: str
    style: str
    style_photo: float
    style_feedforward: float
    style_gatys: float
    content_feedforward: float
    content_gatys: float
    layers_feedforward: dict[str, float]  # the style loss split by VGG layer
    layers_gatys: dict[str, float]

    @property
    def ratio(self) -> float:
        return self.style_feedforward / max(self.style_gatys, 1e-12)


def losses_of(feats: dict, photo_feats: dict, grams: dict) -> tuple[dict[str, float], float]:
    """From VGG features: the style loss of each layer alone (they sum to the style loss, and show which
    scale is missed) and the content loss against the photo."""
    layers = {name: float(style_loss({name: feats[name]}, {name: g})) for name, g in grams.items()}
    return layers, float(content_loss(feats[CONTENT_LAYER], photo_feats[CONTENT_LAYER]))


def photo_tensor(path: Path, size: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """A photo at most ``size`` px on its long side, cropped to multiples of the network's stride."""
    img = load_rgb(path, size)
    w, h = (d // STRIDE * STRIDE for d in img.size)
    return to_tensor(img.crop((0, 0, w, h)))[None].to(device)


def style_weights(i: int, n: int, device: torch.device | str = "cpu") -> torch.Tensor | None:
    """The one-hot weights selecting style ``i`` of a CIN network (None for a single-style network)."""
    return one_hot(torch.tensor([i]), n).to(device) if n > 1 else None


def measure(checkpoint: str | Path, styles: list[str | Path], photos: str | Path, size: int = 256,
            gatys_steps: int = 200, max_photos: int = 4, device: str = "cpu",
            style_size: int | None = None) -> list[QualityRow]:
    """``style_size`` overrides the checkpoint's style-image size, to compare checkpoints on equal targets."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    cfg = state.get("config", {})
    cw, sw, tw = cfg.get("content_weight", 4.0), cfg.get("style_weight", 1.5), cfg.get("tv_weight", 20.0)
    dev = torch.device(device)
    net, names = load_network(checkpoint)
    net = net.to(dev)
    if len(styles) != len(names):
        raise ValueError(f"{len(styles)} style images for a network with {len(names)} styles")
    vgg = VGGFeatures(STYLE_LAYERS).to(dev)
    all_grams = style_grams(vgg, [str(s) for s in styles], style_size or cfg.get("style_size", 384), dev)
    rows = []
    for path in list_images(photos)[:max_photos]:
        x = photo_tensor(path, size, dev)
        with torch.no_grad():
            photo_feats = vgg(x)
        for i, name in enumerate(names):
            grams = {k: v[i:i + 1] for k, v in all_grams.items()}
            with torch.no_grad():
                y = net(x, style_weights(i, len(names), dev)).clamp(0, 255).round()
                layers_photo, _ = losses_of(photo_feats, photo_feats, grams)
                layers_ff, c_ff = losses_of(vgg(y), photo_feats, grams)
            g = gatys_transfer(vgg, x, [], [], cw, sw, tw, steps=gatys_steps, grams=grams).image
            with torch.no_grad():
                layers_g, c_g = losses_of(vgg(g.round()), photo_feats, grams)
            s_photo, s_ff, s_g = (sum(v.values()) for v in (layers_photo, layers_ff, layers_g))
            row = QualityRow(path.name, name, s_photo, s_ff, s_g, c_ff, c_g, layers_ff, layers_g)
            log.info("%s / %s: style photo %.3f, feed-forward %.3f, Gatys %.3f (ratio %.2f)", path.name, name,
                     s_photo, s_ff, s_g, row.ratio)
            rows.append(row)
    return rows


def fidelity(checkpoint: str | Path, reference: str | Path, photos: str | Path, size: int = 256,
             max_photos: int = 4) -> list[dict]:
    """How closely one network reproduces another (a distilled student its teacher), per style over
    held-out photos: PSNR in dB and mean absolute difference in output levels (uint8 outputs)."""
    net, names = load_network(checkpoint)
    ref, ref_names = load_network(reference)
    if names != ref_names:
        raise ValueError(f"style lists differ: {names} vs {ref_names}")
    sq = {n: [] for n in names}
    ad = {n: [] for n in names}
    for path in list_images(photos)[:max_photos]:
        x = photo_tensor(path, size)
        for i, name in enumerate(names):
            wts = style_weights(i, len(names))
            with torch.no_grad():
                a, b = (m(x, wts).clamp(0, 255).round() for m in (net, ref))
            sq[name].append(float((a - b).pow(2).mean()))
            ad[name].append(float((a - b).abs().mean()))
    out = []
    for name in names:
        mse = sum(sq[name]) / len(sq[name])
        out.append({"style": name, "psnr_db": 10 * math.log10(255**2 / max(mse, 1e-12)),
                    "mean_abs_levels": sum(ad[name]) / len(ad[name])})
    return out


def summarize(rows: list[QualityRow]) -> list[dict]:
    by_style: dict[str, list[QualityRow]] = {}
    for r in rows:
        by_style.setdefault(r.style, []).append(r)
    out = []
    keys = ("style_photo", "style_feedforward", "style_gatys", "content_feedforward", "content_gatys")
    for style, rs in by_style.items():
        means = {k: sum(getattr(r, k) for r in rs) / len(rs) for k in keys}
        ratio = means["style_feedforward"] / max(means["style_gatys"], 1e-12)
        out.append({"style": style, "photos": len(rs), **means, "ratio": ratio})
    return out


def layer_ratios(rows: list[QualityRow]) -> dict[str, dict[str, float]]:
    """Per VGG layer, over all rows: mean style loss of the feed-forward output and of Gatys, and their ratio."""
    out = {}
    for name in rows[0].layers_feedforward:
        ff = sum(r.layers_feedforward[name] for r in rows) / len(rows)
        g = sum(r.layers_gatys[name] for r in rows) / len(rows)
        out[name] = {"feedforward": ff, "gatys": g, "ratio": ff / max(g, 1e-12)}
    return out


def rows_as_dicts(rows: list[QualityRow]) -> list[dict]:
    return [asdict(r) | {"ratio": r.ratio} for r in rows]
