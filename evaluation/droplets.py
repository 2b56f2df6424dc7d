"""Droplets: where a style network hides a spike past instance norm, and whether the served picture shows it.

Instance norm takes each feature map's mean and variance away; a network that needs them concentrates most
channels into one spike (Karras et al. 2020, StyleGAN2, section 2), and the decoder paints that spot as a
round stamp: composition_viii's and langlois_bridge's discs on a lawn, starry_night's lone swirl, village_street's
green dots. Inside the serving margin, which the server crops away, a droplet
is harmless. This reads ``nets.losses.droplet_strength`` as the server runs the
network (the inputs of ``training.networks.droplet_norms``, the layers the training loss watches), and reports
the strongest droplet inside the picture and in the margin.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from stylecast.evaluation.quality import ServedNetwork, photo_tensor, style_weights
from stylecast.nets.images import list_images
from stylecast.nets.losses import droplet_strength
from stylecast.training.checkpoint import load_network
from stylecast.training.networks import droplet_norms

from stylecast.contract import SERVING_MARGIN, STRIDE

# The training loss prices a peak from nets.losses.DROPLET_THRESHOLD (3) on. The stamps seen by eye on starter8
# (step 26600: dots, lawn discs, lone swirls) peak at 13 to 24 inside the
# picture; starter8_fast, which paints none, at 3 to 5.
VISIBLE = 10.0


@dataclass
class DropletRow:
    photo: str
    style: str
    inside: float  # the strongest droplet, over the watched layers, whose cell lies within the served picture
    at: tuple[int, int]  # where the strongest on the residual stage is, in photo pixels
    margin: float  # the strongest in the margin the server crops away


def _peaks(strength: torch.Tensor, h: int, w: int, padded: tuple[int, int]) -> tuple[float, tuple[int, int], float]:
    """Split one [H, W] strength map into the picture and the margin by where each cell's centre lands."""
    sy, sx = padded[0] / strength.shape[0], padded[1] / strength.shape[1]
    ys = (torch.arange(strength.shape[0]) + 0.5) * sy - SERVING_MARGIN
    xs = (torch.arange(strength.shape[1]) + 0.5) * sx - SERVING_MARGIN
    inside = ((ys >= 0) & (ys < h))[:, None] & ((xs >= 0) & (xs < w))[None, :]
    s_in = strength.masked_fill(~inside, -np.inf)
    k = int(s_in.flatten().argmax())
    i, j = divmod(k, strength.shape[1])
    margin = float(strength.masked_fill(inside, -np.inf).max()) if (~inside).any() else float("nan")
    return float(s_in.flatten()[k]), (int(xs[j]), int(ys[i])), margin


def droplets(checkpoint: str | Path, photos: str | Path, size: int = 256, max_photos: int = 12,
             only: set[str] | None = None) -> list[DropletRow]:
    """Every style (or those in ``only``) of a PyTorch checkpoint on the held-out photos, as served."""
    net, names = load_network(checkpoint)
    return network_droplets(net, names, photos, size, max_photos, only)


def network_droplets(net: torch.nn.Module, names: list[str], photos: str | Path, size: int = 256,
                     max_photos: int = 12, only: set[str] | None = None) -> list[DropletRow]:
    served = ServedNetwork(net)
    seen: list[torch.Tensor] = []
    hooks = [n.register_forward_pre_hook(lambda m, a: seen.append(a[0].detach())) for n in droplet_norms(net)]
    rows = []
    try:
        for path in list_images(photos)[:max_photos]:
            x = photo_tensor(path, size)
            padded = (x.shape[2] + 2 * SERVING_MARGIN, x.shape[3] + 2 * SERVING_MARGIN)
            padded = tuple(-(-d // STRIDE) * STRIDE for d in padded)  # the served graph pads to the stride
            for i, style in enumerate(names):
                if only is not None and style not in only:
                    continue
                seen.clear()
                with torch.no_grad():
                    served(x, style_weights(i, len(names)))
                peaks = [_peaks(droplet_strength(f)[0], x.shape[2], x.shape[3], padded) for f in seen]
                # where: on the residual stage (droplet_norms lists it before the upsampling stages, which
                # spread a spike into a ring), where a spike is sharpest
                at = max(peaks[:-len(net.up)], key=lambda p: p[0])[1]
                rows.append(DropletRow(path.stem, style, max(p[0] for p in peaks), at, max(p[2] for p in peaks)))
    finally:
        for h in hooks:
            h.remove()
    return rows


def summarize(rows: list[DropletRow], threshold: float = VISIBLE) -> dict[str, dict]:
    """Per style: the mean inside peak, and on how many photos a droplet inside the picture passes
    ``threshold``."""
    out = {}
    for style in dict.fromkeys(r.style for r in rows):
        rs = [r for r in rows if r.style == style]
        out[style] = {"inside": float(np.mean([r.inside for r in rs])),
                      "photos_over": sum(r.inside > threshold for r in rs),
                      "margin": float(np.mean([r.margin for r in rs])), "photos": len(rs)}
    return out
