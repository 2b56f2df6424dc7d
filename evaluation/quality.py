"""Quality a user would recognise, measured on held-out photos the network never trained on.

- **Style ratio**: the Gram distance of the stylized photo to its painting divided by the photo's own
  distance, in ImageNet EfficientNet-Lite0 at ``stem, block2, block4, block7, block10``. The distance is
  the mean over those layers of ||G(x) - G(s)||^2 / ||G(s)||^2. 1 means no change; 0 means the painting's
  statistics. The judge is fixed, whatever loss network trained the model, so models compare fairly.
- **Content kept**: the share of (photo, style) pairs where the classifier's top 5 on the stylized photo
  holds its top 1 on the photo.
- **Per-image optimization** (Gatys et al., in the sidecar's render loop, with the judge as loss network
  and the recipe's weights) on the first photos, as a reference: its style ratio, and the older ratio of
  the feed-forward distance to the optimized one.
- **Nudged ratio**: the style ratio after ``NUDGE_STEPS`` signed steps of one level down the judge's own
  gradient (a fast-gradient-sign nudge: no pixel moves more than two levels). It says how much of a style
  ratio invisible pixel changes can buy: a difference between two models smaller than ratio minus nudged
  ratio is one the judge's network tells, not one a viewer sees.
- A **labelled gallery**: every style on held-out photos, paintings and style names over the columns, and
  a row of per-image optimizations for reference.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from stylecast.nets.images import list_images, load_rgb, to_tensor
from stylecast.nets.losses import energy, gram_matrix, relative_mse, style_loss
from stylecast.nets.perceptual import (
    EFFICIENTNET_CONTENT_LAYER,
    EFFICIENTNET_STYLE_LAYERS,
    load_efficientnet_lite0,
    loss_network,
)
from stylecast.training.checkpoint import load_network
from stylecast.training.data import load_painting, resize_square
from stylecast.training.networks import one_hot
from torch.nn import functional as F

from stylecast.contract import STRIDE

log = logging.getLogger(__name__)

JUDGE_LAYERS = EFFICIENTNET_STYLE_LAYERS
STYLE_SCALE = 1.5  # the painting is seen at 1.5x the photo's long side, as in training
GATYS = {"content_weight": 4.0, "style_weight": 6.0, "tv_weight": 20.0, "lr": 4.0}
NUDGE_STEPS = 2


def _pixels(x: torch.Tensor) -> torch.Tensor:
    """NCHW 0..255 floats -> uint8 NHWC, the wire's pixels."""
    return x.clamp(0, 255).round().to(torch.uint8).permute(0, 2, 3, 1)


def _planes(y: torch.Tensor) -> torch.Tensor:
    """uint8 NHWC -> NCHW floats, the measure's layout."""
    return y.permute(0, 3, 1, 2).float()


class OnnxStylizer:
    """An exported style graph (an int8 one, say) behind the PyTorch network's call: NCHW 0..255 floats and
    one-hot style weights in, NCHW 0..255 out, run by ONNX Runtime on uint8 HWC as the server runs it."""

    def __init__(self, path: str | Path) -> None:
        import onnxruntime as ort

        from stylecast.contract import IMAGE_INPUT, STYLE_WEIGHTS_INPUT, STYLIZED_OUTPUT

        self._session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        self._names = (IMAGE_INPUT, STYLE_WEIGHTS_INPUT, STYLIZED_OUTPUT)

    def to(self, device: torch.device | str) -> OnnxStylizer:
        if torch.device(device).type != "cpu":
            raise ValueError("an ONNX model is measured on the CPU")
        return self

    def __call__(self, x: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
        image, style, out = self._names
        feed = {image: _pixels(x).contiguous().numpy()}
        if weights is not None:
            feed[style] = weights.float().numpy()
        return _planes(torch.from_numpy(self._session.run([out], feed)[0]))


class ServedNetwork(torch.nn.Module):
    """A checkpoint's network inside the serving graph (``export/graph.py``: uint8 pixels, the replicate
    margin, stride padding, rounding), so that a checkpoint measures as the server will answer. The bare
    network's outer pixels differ: it paints lines along the borders that the served graph crops away."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        from stylecast.export.graph import ServingModel

        self.served = ServingModel(net.eval())

    def forward(self, x: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
        return _planes(self.served(_pixels(x), weights))


def load_stylizer(path: str | Path) -> tuple[ServedNetwork | OnnxStylizer, list[str]]:
    """What the server would run: a checkpoint's network in the serving graph, or an exported ONNX file
    inside its model folder (``<model>/<version>/<file>.onnx``, style names from the folder's config)."""
    path = Path(path)
    if path.suffix != ".onnx":
        net, names = load_network(path)
        return ServedNetwork(net), names
    from stylecast.server.config import read_config

    from stylecast.contract import STYLES_PARAMETER

    config = read_config(path.parent.parent)
    names = config.parameters[STYLES_PARAMETER].string_value.split(",")
    return OnnxStylizer(path), names


class Judge:
    """EfficientNet-Lite0 (ImageNet): Gram statistics at five layers and top-k classes."""

    def __init__(self, device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        self.features = loss_network("efficientnet-lite0", JUDGE_LAYERS).to(self.device)
        self.classifier = load_efficientnet_lite0()[0].to(self.device)

    @torch.no_grad()
    def grams(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {k: gram_matrix(v) for k, v in self.features(x).items()}

    @torch.no_grad()
    def distances(self, x: torch.Tensor, target: dict[str, torch.Tensor]) -> dict[str, float]:
        """Per layer: ||G(x) - G(s)||^2 / ||G(s)||^2."""
        g = self.grams(x)
        return {k: float(relative_mse(g[k], target[k], energy(target[k])).mean()) for k in JUDGE_LAYERS}

    @torch.no_grad()
    def top(self, x: torch.Tensor, k: int = 5) -> list[int]:
        x = F.interpolate(x, size=(224, 224), mode="bilinear", antialias=True, align_corners=False)
        return self.classifier(x * (2.0 / 255.0) - 1.0)[0].topk(k).indices.tolist()

    def painting(self, path: str | Path, size: int) -> dict[str, torch.Tensor]:
        return self.grams(to_tensor(load_painting(path, size))[None].to(self.device))

    def nudge(self, y: torch.Tensor, target: dict[str, torch.Tensor], steps: int = NUDGE_STEPS) -> torch.Tensor:
        """``y`` (0..255 levels) moved ``steps`` signed steps of one level down its Gram distance to
        ``target``: at most ``steps`` levels a pixel."""
        y = y.detach().round()
        for _ in range(steps):
            y.requires_grad_(True)
            (grad,) = torch.autograd.grad(style_loss(self.features(y), target), y)
            y = (y.detach() - grad.sign()).clamp(0, 255)
        return y


def mean_distance(d: dict[str, float]) -> float:
    return sum(d.values()) / len(d)


@dataclass
class QualityRow:
    photo: str
    style: str
    distance_photo: float
    distance_output: float
    kept: bool  # the photo's top-1 class is in the output's top 5
    layers: dict[str, float]  # per-layer ratio output / photo
    distance_gatys: float | None = None
    distance_nudged: float | None = None  # the output's distance after Judge.nudge
    photo_top1: int = -1
    output_top5: list[int] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        return self.distance_output / max(self.distance_photo, 1e-12)

    @property
    def gatys_ratio(self) -> float | None:
        return None if self.distance_gatys is None else self.distance_gatys / max(self.distance_photo, 1e-12)

    @property
    def nudged_ratio(self) -> float | None:
        return None if self.distance_nudged is None else self.distance_nudged / max(self.distance_photo, 1e-12)

    @property
    def vs_gatys(self) -> float | None:
        return None if self.distance_gatys is None else self.distance_output / max(self.distance_gatys, 1e-12)


def photo_tensor(path: Path, size: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """A photo at most ``size`` px on its long side, cropped to multiples of the network's stride."""
    img = load_rgb(path, size)
    w, h = (d // STRIDE * STRIDE for d in img.size)
    return to_tensor(img.crop((0, 0, w, h)))[None].to(device)


def style_weights(i: int, n: int, device: torch.device | str = "cpu") -> torch.Tensor | None:
    """The one-hot weights selecting style ``i`` of a CIN network (None for a single-style network)."""
    return one_hot(torch.tensor([i]), n).to(device) if n > 1 else None


def optimize_photo(judge: Judge, x: torch.Tensor, painting: str | Path, size: int, steps: int,
                   network: str = "efficientnet-lite0") -> torch.Tensor:
    """Per-image style transfer from the photo, in the sidecar's render loop, with the named loss network
    (the judge's own network by default) and the recipe's weights."""
    from stylecast.server.sidecar.optimization.methods import gatys_transfer

    if network == "efficientnet-lite0":
        net, content_layer, grams = judge.features, EFFICIENTNET_CONTENT_LAYER, judge.painting(painting, size)
    else:
        net = loss_network(network).to(judge.device)
        content_layer = net.content_layer
        with torch.no_grad():
            feats = net(to_tensor(load_painting(painting, size))[None].to(judge.device))
        grams = {k: gram_matrix(feats[k]) for k in net.style_layers}
    r = gatys_transfer(net, x, [], [], GATYS["content_weight"], GATYS["style_weight"], GATYS["tv_weight"],
                       content_layer=content_layer, steps=steps, lr=GATYS["lr"], grams=grams)
    return r.image.clamp(0, 255).round()


def measure(checkpoint: str | Path, styles: list[str | Path], photos: str | Path, size: int = 256,
            max_photos: int = 12, gatys_photos: int = 2, gatys_steps: int = 200,
            device: str = "cpu", gatys_network: str = "efficientnet-lite0",
            only: set[str] | None = None, nudge_steps: int = 0) -> list[QualityRow]:
    """Every style (or those named in ``only``) on up to ``max_photos`` held-out photos; per-image
    optimization (with ``gatys_network`` as its loss network) on the first ``gatys_photos``; with
    ``nudge_steps``, the nudged ratio too. The judge is always EfficientNet-Lite0."""
    dev = torch.device(device)
    net, names = load_stylizer(checkpoint)
    net = net.to(dev)
    if len(styles) != len(names):
        raise ValueError(f"{len(styles)} style images for a network with {len(names)} styles")
    judge = Judge(dev)
    paintings = [judge.painting(s, round(size * STYLE_SCALE)) if only is None or n in only else None
                 for s, n in zip(styles, names)]
    rows = []
    for n_photo, path in enumerate(list_images(photos)[:max_photos]):
        x = photo_tensor(path, size, dev)
        top1 = judge.top(x, 1)[0]
        for i, name in enumerate(names):
            if paintings[i] is None:
                continue
            with torch.no_grad():
                y = net(x, style_weights(i, len(names), dev)).clamp(0, 255).round()
            d_photo, d_out = judge.distances(x, paintings[i]), judge.distances(y, paintings[i])
            top5 = judge.top(y, 5)
            d_gatys = None
            if n_photo < gatys_photos and gatys_steps > 0:
                y_opt = optimize_photo(judge, x, styles[i], round(size * STYLE_SCALE), gatys_steps, gatys_network)
                d_gatys = mean_distance(judge.distances(y_opt, paintings[i]))
            d_nudged = None
            if nudge_steps:
                d_nudged = mean_distance(judge.distances(judge.nudge(y, paintings[i], nudge_steps), paintings[i]))
            row = QualityRow(path.name, name, mean_distance(d_photo), mean_distance(d_out), top1 in top5,
                             {k: d_out[k] / max(d_photo[k], 1e-12) for k in JUDGE_LAYERS}, d_gatys, d_nudged,
                             top1, top5)
            log.info("%s / %s: style ratio %.3f, content kept %s%s", path.name, name, row.ratio, row.kept,
                     "" if d_gatys is None else f", per-image optimization {row.gatys_ratio:.3f}")
            rows.append(row)
    return rows


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def summarize(rows: list[QualityRow]) -> dict:
    """Per style: mean style ratio, content kept, the per-image optimization's ratio and ff / Gatys;
    overall: mean and worst style ratio, content kept."""
    by_style: dict[str, list[QualityRow]] = {}
    for r in rows:
        by_style.setdefault(r.style, []).append(r)
    per_style = []
    for style, rs in by_style.items():
        per_style.append({
            "style": style, "photos": len(rs), "ratio": _mean([r.ratio for r in rs]),
            "content_kept": _mean([float(r.kept) for r in rs]),
            "gatys_ratio": _mean([r.gatys_ratio for r in rs if r.gatys_ratio is not None]),
            "vs_gatys": _mean([r.vs_gatys for r in rs if r.vs_gatys is not None]),
            "nudged_ratio": _mean([r.nudged_ratio for r in rs if r.nudged_ratio is not None]),
            "layers": {k: _mean([r.layers[k] for r in rs]) for k in JUDGE_LAYERS},
        })
    ratios = [s["ratio"] for s in per_style]
    nudged = [s["nudged_ratio"] for s in per_style if s["nudged_ratio"] is not None]
    return {"per_style": per_style, "mean_ratio": _mean(ratios), "worst_ratio": max(ratios),
            "mean_nudged_ratio": _mean(nudged),
            "content_kept": _mean([float(r.kept) for r in rows]), "photos": len({r.photo for r in rows})}


def rows_as_dicts(rows: list[QualityRow]) -> list[dict]:
    return [asdict(r) | {"ratio": r.ratio, "gatys_ratio": r.gatys_ratio, "vs_gatys": r.vs_gatys,
                         "nudged_ratio": r.nudged_ratio} for r in rows]


def fidelity(checkpoint: str | Path, reference: str | Path, photos: str | Path, size: int = 256,
             max_photos: int = 4) -> list[dict]:
    """How closely one network reproduces another (a distilled student its teacher), per style over
    held-out photos: PSNR in dB and mean absolute difference in output levels (uint8 outputs)."""
    net, names = load_stylizer(checkpoint)
    ref, ref_names = load_stylizer(reference)
    if names != ref_names:
        raise ValueError(f"style lists differ: {names} vs {ref_names}")
    sq: dict[str, list[float]] = {n: [] for n in names}
    ad: dict[str, list[float]] = {n: [] for n in names}
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


# --- the labelled gallery ------------------------------------------------------------------------------


def _square(x: torch.Tensor, tile: int) -> np.ndarray:
    """Centre square of an NCHW 0..255 tensor, resized to ``tile`` px, as uint8 HWC."""
    h, w = x.shape[2:]
    s = min(h, w)
    x = resize_square(x[0, :, (h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s], tile)
    return x.clamp(0, 255).round().byte().permute(1, 2, 0).cpu().numpy()


def gallery(checkpoint: str | Path, styles: list[str | Path], photos: list[Path], out: str | Path,
            size: int = 256, tile: int = 160, gatys_steps: int = 200, device: str = "cpu",
            gatys_network: str = "efficientnet-lite0", compare: dict[str, str | Path] | None = None) -> Path:
    """Rows: held-out photos in every style (then the same photo through each ``compare`` network, labelled
    with its key); last row: per-image optimization of the first photo. Columns: the photo, then each style
    under its painting and name."""
    from stylecast.client.imaging import contact_sheet

    dev = torch.device(device)
    net, names = load_stylizer(checkpoint)
    others = {label: load_stylizer(path) for label, path in (compare or {}).items()}
    for label, (_, other_names) in others.items():
        if other_names != names:
            raise ValueError(f"{label} holds styles {other_names}, not {names}")
    nets = [("", net.to(dev))] + [(f" ({label})", n.to(dev)) for label, (n, _) in others.items()]
    judge = Judge(dev) if gatys_steps else None
    header = [None] + [_square(to_tensor(load_rgb(s, tile * 2))[None], tile) for s in styles]
    rows: list[list[np.ndarray | None]] = [header]
    labels = ["painting"]
    for path in photos:
        x = photo_tensor(path, size, dev)
        for suffix, model in nets:
            with torch.no_grad():
                outs = [model(x, style_weights(i, len(names), dev)).clamp(0, 255) for i in range(len(names))]
            rows.append([_square(x, tile)] + [_square(y, tile) for y in outs])
            labels.append(path.stem + suffix)
    if judge is not None:
        x = photo_tensor(photos[0], size, dev)
        opt = [optimize_photo(judge, x, s, round(size * STYLE_SCALE), gatys_steps, gatys_network) for s in styles]
        rows.append([_square(x, tile)] + [_square(y, tile) for y in opt])
        labels.append(f"per-image optimization ({gatys_network}), {gatys_steps} steps")
    sheet = contact_sheet(rows, ["photo"] + names, labels, tile)
    out = Path(out)
    sheet.save(out)
    log.info("wrote %s: %d photos x %d styles", out, len(photos), len(names))
    return out
