"""Neurons of intermediate layers, by name: what the neuron-level techniques (saliency and guided backprop of a
neuron, feature visualization) and max-activating patches share.

A layer is a VGG16 ReLU (``relu1_1`` .. ``relu4_3``, the layers of max_activating_patches, so a unit found there
can be explained and visualized under the same name), a block of the EfficientNet-Lite0 classifier (``stem``,
``block0`` .. ``block15``), or ``class``: the classifier's logits, whose channel is an ImageNet class.
"""

from __future__ import annotations

import torch
from stylecast.nets.vgg import LAYER_INDEX
from torch import nn

from ..errors import InvalidArgument
from .networks import cached_loss_network, load_classifier

# VGG16 layers the optimizations may target: every ReLU up to relu4_3 (the bundled weights end there)
LAYERS = tuple(n for n in LAYER_INDEX if n.startswith("relu") and LAYER_INDEX[n] <= LAYER_INDEX["relu4_3"])
# EfficientNet-Lite0 layers feature inversion may match
EFFICIENTNET_LAYERS = ("stem", *(f"block{i}" for i in range(11)))
# Layers whose neurons the neuron-level techniques take (below): the classifier's logits, VGG16's
# ReLUs (max_activating_patches' names) and every EfficientNet-Lite0 block
CLASSIFIER_BLOCKS = (*EFFICIENTNET_LAYERS, *(f"block{i}" for i in range(11, 16)))
NEURON_LAYERS = ("class", *LAYERS, *CLASSIFIER_BLOCKS)


def network(layer: str) -> nn.Module:
    """A frozen module mapping RGB 0..255 NCHW to ``layer``'s activations [B, C, H, W] (logits: [B, 1000, 1, 1])."""
    if layer == "class":
        return _Logits(load_classifier())
    if layer in LAYERS:
        return _Layer(cached_loss_network("vgg16", LAYERS), layer)
    if layer in CLASSIFIER_BLOCKS:
        return _Layer(cached_loss_network("efficientnet-lite0", (layer,)), layer)
    raise InvalidArgument(f"unknown layer {layer!r}: one of {', '.join(NEURON_LAYERS)}")


class _Layer(nn.Module):
    def __init__(self, net: nn.Module, layer: str) -> None:
        super().__init__()
        self.net, self.layer = net, layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)[self.layer]


class _Logits(nn.Module):
    def __init__(self, classifier: nn.Module) -> None:
        super().__init__()
        self.classifier = classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(x)[:, :, None, None]


class NeuronScores(nn.Module):
    """A layer's activations flattened to [B, C * H * W]: one neuron is one "class" to an attribution, so
    saliency and guided backprop explain it unchanged (``target`` = :func:`index`)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten(1)


def locate(net: nn.Module, x: torch.Tensor, channel: int, y: int, x_: int) -> tuple[int, int, float, tuple]:
    """The neuron's position (its most active one where ``y`` or ``x_`` is negative), its activation there, and
    the layer's shape (C, H, W)."""
    with torch.no_grad():
        a = net(x)[0]
    c, h, w = a.shape
    if not 0 <= channel < c:
        raise InvalidArgument(f"parameter 'channel' must be in [0, {c - 1}] for this layer, got {channel}")
    if y < 0 or x_ < 0:
        flat = int(a[channel].flatten().argmax())
        y, x_ = divmod(flat, w)
    elif y >= h or x_ >= w:
        raise InvalidArgument(f"position ({y}, {x_}) is outside the layer's {h} x {w} grid at this input size")
    return y, x_, float(a[channel, y, x_]), (c, h, w)


def index(channel: int, y: int, x: int, shape: tuple) -> int:
    _, h, w = shape
    return (channel * h + y) * w + x
