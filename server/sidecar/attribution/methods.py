"""Attribution techniques with one signature, as in Captum: ``attribute(x, target) -> [B, H, W]`` maps.

``x`` is RGB 0..255 NCHW float. Hooks exist only during a call and are removed in ``finally``; the
model is never mutated (no lasting eval(), no module swaps).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn
from torch.nn import functional as F

from ..networks import Classifier

ACTIVATIONS = (nn.ReLU, nn.ReLU6)


@contextmanager
def hooks(handles: list) -> Iterator[None]:
    """Removes every registered hook when the call ends, even when it raises."""
    try:
        yield
    finally:
        for h in handles:
            h.remove()
        handles.clear()


def _score(model: Classifier, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    logits = model(x)
    return logits.gather(1, target.view(-1, 1)).sum()


class Saliency:
    """|d score / d pixel|, max over channels (Simonyan et al. 2014)."""

    def __init__(self, model: Classifier) -> None:
        self.model = model

    def attribute(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        x = x.detach().clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(_score(self.model, x, target), x)
        return grad.abs().amax(dim=1)


def _on_this_thread() -> Callable[[], bool]:
    """True only on the thread that made it. The classifier is shared by techniques running on other
    threads; a hook must act on its own call's passes only (CPU autograd runs backward on the caller's thread)."""
    owner = threading.get_ident()
    return lambda: threading.get_ident() == owner


class GuidedBackprop(Saliency):
    """Backpropagate only positive gradients through every ReLU (Springenberg et al. 2015)."""

    def attribute(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        handles: list = []
        on_caller = _on_this_thread()

        def guide(module, grad_input, grad_output):
            if not on_caller():
                return None
            return tuple(None if g is None else g.clamp(min=0) for g in grad_input)

        with hooks(handles):
            for m in self.model.modules():
                if isinstance(m, ACTIVATIONS):
                    handles.append(m.register_full_backward_hook(guide))
            return super().attribute(x, target)


class GradCAM:
    """Class activation map from the last conv stage, weighted by pooled gradients (Selvaraju et al.)."""

    def __init__(self, model: Classifier) -> None:
        self.model = model

    def attribute(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        handles: list = []
        store: dict[str, torch.Tensor] = {}
        on_caller = _on_this_thread()
        with hooks(handles):
            handles.append(self.model.feature_layer.register_forward_hook(
                lambda m, i, o: store.__setitem__("a", o) if on_caller() else None))
            x = x.detach().clone().requires_grad_(True)
            score = _score(self.model, x, target)
            (grad,) = torch.autograd.grad(score, store["a"])
        weights = grad.mean(dim=(2, 3), keepdim=True)
        cam = F.relu((weights * store["a"]).sum(1, keepdim=True))
        return F.interpolate(cam, size=x.shape[2:], mode="bilinear", align_corners=False)[:, 0].detach()


def _no_check() -> None:
    return None


def occlusion_windows(h: int, w: int, patch: int, stride: int) -> list[tuple[int, int]]:
    """Top-left corners of the occluding patches: one forward pass each."""
    return [(i, j) for i in range(0, max(1, h - patch) + 1, stride) for j in range(0, max(1, w - patch) + 1, stride)]


class Occlusion:
    """Drop in the target score when a patch is filled with the mean pixel (Zeiler and Fergus 2014).

    ``check`` is called before each batch of forward passes; it raises to stop the work (a cancelled
    call or a passed deadline)."""

    def __init__(self, model: Classifier, patch: int = 32, stride: int = 16, batch: int = 16,
                 check: Callable[[], None] = _no_check) -> None:
        self.model, self.patch, self.stride, self.batch, self.check = model, patch, stride, batch, check

    @torch.no_grad()
    def attribute(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        out = torch.zeros(b, h, w)
        count = torch.zeros(b, h, w)
        base = self.model(x).gather(1, target.view(-1, 1))[:, 0]
        mean = x.mean(dim=(2, 3), keepdim=True)
        boxes = occlusion_windows(h, w, self.patch, self.stride)
        for k in range(0, len(boxes), self.batch):
            self.check()
            chunk = boxes[k:k + self.batch]
            xs = x.repeat_interleave(len(chunk), 0).clone()
            for n, (i, j) in enumerate(chunk):
                xs[n::len(chunk), :, i:i + self.patch, j:j + self.patch] = mean
            scores = self.model(xs).gather(1, target.repeat_interleave(len(chunk)).view(-1, 1))[:, 0]
            drop = base.repeat_interleave(len(chunk)) - scores
            for n, (i, j) in enumerate(chunk):
                out[:, i:i + self.patch, j:j + self.patch] += drop[n::len(chunk)].view(b, 1, 1)
                count[:, i:i + self.patch, j:j + self.patch] += 1
        return (out / count.clamp(min=1)).clamp(min=0)


class SmoothGrad:
    """A wrapper, not a technique: averages any attribution over noisy copies (Smilkov et al. 2017)."""

    def __init__(self, technique, samples: int = 8, sigma: float = 0.1, seed: int = 0,
                 check: Callable[[], None] = _no_check) -> None:
        self.technique, self.samples, self.sigma, self.seed = technique, samples, sigma, seed
        self.check = check

    def attribute(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed)
        total = torch.zeros(x.shape[0], *x.shape[2:])
        noise_std = self.sigma * 255.0
        for _ in range(self.samples):
            self.check()
            noisy = x + torch.randn(x.shape, generator=g) * noise_std
            total += self.technique.attribute(noisy, target)
        return total / self.samples
