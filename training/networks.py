"""Johnson-style feed-forward transformer network with instance or conditional instance norm.

Layout follows pytorch/examples fast_neural_style: reflection padding, 9x9 conv, two stride-2
convs, five residual blocks, two nearest-neighbour x2 upsample + conv stages, 9x9 output conv.
With ``n_styles > 1`` every normalization layer is a conditional instance norm (Dumoulin et al.
2017): tables Gamma, Beta of shape [N, C]; a weight vector w blends them, so one network holds N
styles and any mixture of them.

Pixels in and out are float RGB on the 0..255 scale, NCHW. Inside, the input is scaled to 0..1 and the
output passes through a scaled tanh (as in Johnson's original code), so the network starts with outputs
in range and never leaves it: this converges far faster than an unbounded output on a short budget.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class ConditionalInstanceNorm2d(nn.Module):
    """Instance norm whose affine parameters are a weighted blend of per-style tables."""

    def __init__(self, channels: int, n_styles: int) -> None:
        super().__init__()
        self.norm = nn.InstanceNorm2d(channels, affine=False)
        self.gamma = nn.Parameter(torch.ones(n_styles, channels))
        self.beta = nn.Parameter(torch.zeros(n_styles, channels))

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """``weights``: [B, N] (or [N], shared by the batch) style mixture."""
        w = weights.to(self.gamma.dtype)
        gamma = (w @ self.gamma).reshape(-1, x.shape[1], 1, 1)
        beta = (w @ self.beta).reshape(-1, x.shape[1], 1, 1)
        return self.norm(x) * gamma + beta


NORMS = ("instance", "batch")


class Norm(nn.Module):
    """Instance norm (single style) or conditional instance norm (several styles); batch norm, for a single
    style, only to compare against (Ulyanov et al. 2016: instance norm makes fast style transfer better;
    docs/training.md measures it)."""

    def __init__(self, channels: int, n_styles: int, kind: str = "instance") -> None:
        super().__init__()
        if kind not in NORMS:
            raise ValueError(f"unknown norm {kind!r}: use one of {', '.join(NORMS)}")
        if kind == "batch" and n_styles > 1:
            raise ValueError("batch norm is for a single-style network (several styles use conditional instance norm)")
        self.conditional = n_styles > 1
        self.batch = kind == "batch"
        if self.conditional:
            self.cin = ConditionalInstanceNorm2d(channels, n_styles)
        elif self.batch:
            self.bnorm = nn.BatchNorm2d(channels, affine=True)
        else:
            self.inorm = nn.InstanceNorm2d(channels, affine=True)

    def forward(self, x: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
        if self.conditional:
            if weights is None:
                raise ValueError("a multi-style network needs style weights")
            return self.cin(x, weights)
        return self.bnorm(x) if self.batch else self.inorm(x)


def _phase_kernels(k: torch.Tensor) -> list[torch.Tensor]:
    """The 2x2 kernels, one per output phase (row parity a, column parity b; order 00, 01, 10, 11), that a
    3x3 kernel ``k`` [Co, Ci, 3, 3] amounts to on a nearest-neighbour x2 upsampled input: of its three taps
    along an axis, two land on the same input pixel."""
    def fold(t: torch.Tensor, dim: int) -> list[torch.Tensor]:
        a, b, c = t.unbind(dim)
        return [torch.stack([a, b + c], dim), torch.stack([a + b, c], dim)]

    return [kab for ka in fold(k, 2) for kab in fold(ka, 3)]


def _replicate_pad1(x: torch.Tensor) -> torch.Tensor:
    """Replicate padding by one pixel, by concatenating the edge rows and columns. The same numbers as
    ``F.pad(x, [1] * 4, mode="replicate")``, which torch.compile's inductor (torch 2.13) fails to index when
    its input is the pixel shuffle of the stage before."""
    x = torch.cat([x[:, :, :1], x, x[:, :, -1:]], 2)
    return torch.cat([x[:, :, :, :1], x, x[:, :, :, -1:]], 3)


def upsample_conv(x: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    """``conv`` (3x3, stride 1) on ``x`` upsampled x2 (nearest) and reflection-padded by 1, computed at the
    input's resolution. Each output phase is a 2x2 convolution of ``x`` replicate-padded by 1 (the reflected
    border of the upsampled map is the replicated border of ``x``); one convolution computes all four as
    channel groups, each phase takes its window of that output, and the phases interleave (pixel shuffle).
    The same numbers for 4/9 of the multiply-adds, and no full-resolution resize or pad."""
    n, _, h, w = x.shape
    co = conv.out_channels
    y = F.conv2d(_replicate_pad1(x), torch.cat(_phase_kernels(conv.weight)),
                 conv.bias.repeat(4))  # [n, 4 co, h + 1, w + 1], channel group = phase
    phases = [y[:, (2 * a + b) * co:(2 * a + b + 1) * co, a:a + h, b:b + w] for a in range(2) for b in range(2)]
    return F.pixel_shuffle(torch.stack(phases, 2).reshape(n, co * 4, h, w), 2)  # channel c * 4 + phase


class ConvNormAct(nn.Module):
    """Reflection-padded conv, optional nearest-neighbour x2 upsample first, norm, optional ReLU."""

    def __init__(
        self, cin: int, cout: int, kernel: int, stride: int, n_styles: int,
        upsample: bool = False, relu: bool = True, norm: str = "instance",
    ) -> None:
        super().__init__()
        if upsample and (kernel, stride) != (3, 1):
            raise ValueError("an upsampling stage is a 3x3 convolution of stride 1")
        self.upsample = upsample
        self.pad = nn.ReflectionPad2d(kernel // 2)
        self.conv = nn.Conv2d(cin, cout, kernel, stride)
        self.norm = Norm(cout, n_styles, norm)
        self.relu = relu

    def forward(self, x: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
        x = upsample_conv(x, self.conv) if self.upsample else self.conv(self.pad(x))
        x = self.norm(x, weights)
        return F.relu(x) if self.relu else x


class ResidualBlock(nn.Module):
    def __init__(self, channels: int, n_styles: int, norm: str = "instance") -> None:
        super().__init__()
        self.a = ConvNormAct(channels, channels, 3, 1, n_styles, norm=norm)
        self.b = ConvNormAct(channels, channels, 3, 1, n_styles, relu=False, norm=norm)

    def forward(self, x: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
        return x + self.b(self.a(x, weights), weights)


class TransformerNet(nn.Module):
    """The feed-forward style network. ``width`` scales every channel count (1.0 = 32/64/128);
    ``n_residual`` residual blocks at 1/4 resolution; ``edge_kernel`` is the side of the first and last
    convolutions, the only ones at full resolution besides the last upsampling stage (9 in Johnson's
    network; 3 is far cheaper for a fast model); ``norm`` "batch" swaps instance norm for batch norm in a
    single-style network, for the comparison in docs/training.md."""

    def __init__(self, n_styles: int = 1, width: float = 1.0, n_residual: int = 5, edge_kernel: int = 9,
                 norm: str = "instance") -> None:
        super().__init__()
        c1, c2, c3 = (max(4, round(c * width)) for c in (32, 64, 128))
        self.n_styles = n_styles
        self.width = width
        self.arch = {"width": width, "residual_blocks": n_residual, "edge_kernel": edge_kernel}
        if norm != "instance":
            self.arch["norm"] = norm
        self.down = nn.ModuleList([
            ConvNormAct(3, c1, edge_kernel, 1, n_styles, norm=norm),
            ConvNormAct(c1, c2, 3, 2, n_styles, norm=norm),
            ConvNormAct(c2, c3, 3, 2, n_styles, norm=norm),
        ])
        self.res = nn.ModuleList([ResidualBlock(c3, n_styles, norm) for _ in range(n_residual)])
        self.up = nn.ModuleList([
            ConvNormAct(c3, c2, 3, 1, n_styles, upsample=True, norm=norm),
            ConvNormAct(c2, c1, 3, 1, n_styles, upsample=True, norm=norm),
        ])
        self.out_pad = nn.ReflectionPad2d(edge_kernel // 2)
        self.out_conv = nn.Conv2d(c1, 3, edge_kernel, 1)

    def forward(self, x: torch.Tensor, style_weights: torch.Tensor | None = None) -> torch.Tensor:
        """``x``: [B, 3, H, W] RGB 0..255 with H, W multiples of :data:`stylecast.contract.STRIDE`."""
        x = x / 255.0
        if style_weights is not None and style_weights.dim() == 1:
            style_weights = style_weights.unsqueeze(0).expand(x.shape[0], -1)
        for layer in self.down:
            x = layer(x, style_weights)
        for block in self.res:
            x = block(x, style_weights)
        for layer in self.up:
            x = layer(x, style_weights)
        return 127.5 * (torch.tanh(self.out_conv(self.out_pad(x))) + 1.0)


def droplet_norms(net: TransformerNet) -> list[nn.Module]:
    """The norms whose inputs show droplets (``nets.losses.droplet_strength``): those of the last three
    residual blocks and of the upsampling stages. A spike moves along this path; watching all of it keeps
    it from moving to a layer no one watches."""
    return [n for block in net.res[-3:] for n in (block.a.norm, block.b.norm)] + [layer.norm for layer in net.up]


def one_hot(index: torch.Tensor, n: int) -> torch.Tensor:
    """Style weight rows selecting one style each."""
    return F.one_hot(index, n).float()
