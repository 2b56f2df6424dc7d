"""One render loop for every iterative image-optimization technique, in the manner of Lucent:
an image parameterization, a composable objective (``+``, ``-``, scalar ``*``), a list of transforms,
an optimizer factory, a projection after each step, and a stop criterion."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch.nn import functional as F

log = logging.getLogger(__name__)

Transform = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


class State:
    """What objectives see at one step: the transformed image and lazily cached network outputs."""

    def __init__(self, image: torch.Tensor) -> None:
        self.image = image
        self._cache: dict[int, object] = {}

    def run(self, net: torch.nn.Module):
        """``net(image)``, computed once per step however many objectives ask for it."""
        key = id(net)
        if key not in self._cache:
            self._cache[key] = net(self.image)
        return self._cache[key]


class Objective:
    """A scalar to minimize. Compose with ``a + b``, ``a - b``, ``2.0 * a``."""

    def __init__(self, fn: Callable[[State], torch.Tensor], name: str) -> None:
        self.fn, self.name = fn, name

    def __call__(self, state: State) -> torch.Tensor:
        return self.fn(state)

    def __add__(self, other: Objective) -> Objective:
        return Objective(lambda s: self(s) + other(s), f"{self.name} + {other.name}")

    def __sub__(self, other: Objective) -> Objective:
        return Objective(lambda s: self(s) - other(s), f"{self.name} - {other.name}")

    def __mul__(self, k: float) -> Objective:
        return Objective(lambda s: k * self(s), f"{k:g} * {self.name}")

    __rmul__ = __mul__

    def __neg__(self) -> Objective:
        return -1.0 * self


class PixelImage:
    """The image itself is the parameter (RGB 0..255, NCHW)."""

    def __init__(self, init: torch.Tensor) -> None:
        self.param = init.detach().clone().float().requires_grad_(True)

    def parameters(self) -> list[torch.Tensor]:
        return [self.param]

    def image(self) -> torch.Tensor:
        return self.param


# --- transforms (applied before the networks see the image, as robustness regularizers) ---------------

def jitter(pixels: int) -> Transform:
    def apply(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        dx, dy = (int(v) for v in torch.randint(-pixels, pixels + 1, (2,), generator=g))
        return torch.roll(x, shifts=(dy, dx), dims=(2, 3))
    return apply


def random_scale(scales: Sequence[float]) -> Transform:
    def apply(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        s = scales[int(torch.randint(len(scales), (1,), generator=g))]
        return x if s == 1 else F.interpolate(x, scale_factor=s, mode="bilinear", align_corners=False)
    return apply


# --- projections (applied to the parameter after each optimizer step) ---------------------------------

def clamp_pixels(x: torch.Tensor) -> None:
    x.clamp_(0, 255)


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    k = int(2 * round(3 * sigma) + 1)
    t = torch.arange(k, dtype=x.dtype) - k // 2
    w = torch.exp(-(t ** 2) / (2 * sigma ** 2))
    w = w / w.sum()
    c = x.shape[1]
    x = F.conv2d(F.pad(x, (k // 2, k // 2, 0, 0), mode="reflect"), w.view(1, 1, 1, k).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(F.pad(x, (0, 0, k // 2, k // 2), mode="reflect"), w.view(1, 1, k, 1).repeat(c, 1, 1, 1), groups=c)


def adam(lr: float) -> Callable[[list[torch.Tensor]], torch.optim.Optimizer]:
    return lambda params: torch.optim.Adam(params, lr=lr)


@dataclass
class RenderResult:
    image: torch.Tensor
    steps: int
    losses: list[float] = field(default_factory=list)
    stopped_early: bool = False


def render(
    param: PixelImage, objective: Objective, steps: int, *,
    optimizer: Callable[[list[torch.Tensor]], torch.optim.Optimizer] | None = None,
    transforms: Sequence[Transform] = (), project: Sequence[Callable[[torch.Tensor], None]] = (clamp_pixels,),
    stop: Callable[[State, int], bool] | None = None, seed: int = 0,
    progress: Callable[[int, float, torch.Tensor], bool | None] | None = None,
) -> RenderResult:
    """Minimize ``objective`` over ``param`` for at most ``steps`` steps.

    ``stop(state, step)`` ends early; ``progress(step, loss, image)`` is called every step and may
    return False to cancel (a client deadline or cancel stops the work this way).
    """
    g = torch.Generator().manual_seed(seed)
    opt = (optimizer or adam(1.0))(param.parameters())
    losses: list[float] = []
    for step in range(1, steps + 1):
        opt.zero_grad(set_to_none=True)
        x = param.image()
        for t in transforms:
            x = t(x, g)
        state = State(x)
        loss = objective(state)
        loss.backward()
        opt.step()
        with torch.no_grad():
            for p in project:
                p(param.param)
        losses.append(float(loss.detach()))
        if progress is not None and progress(step, losses[-1], param.image()) is False:
            return RenderResult(param.image().detach(), step, losses, stopped_early=True)
        if stop is not None:
            with torch.no_grad():
                if stop(State(param.image()), step):
                    return RenderResult(param.image().detach(), step, losses, stopped_early=True)
    return RenderResult(param.image().detach(), steps, losses)
