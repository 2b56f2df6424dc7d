"""Iterative techniques, each a few lines over the one render loop: class visualization, fooling images,
DeepDream, feature inversion, Gram texture synthesis and Gatys style transfer."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from stylecast.nets.losses import content_loss, gram_matrix, style_loss, tv_loss
from stylecast.nets.perceptual import LossNetwork
from torch.nn import functional as F

from ..networks import Classifier
from .render import (
    Objective,
    PixelImage,
    RenderResult,
    adam,
    clamp_pixels,
    gaussian_blur,
    jitter,
    random_scale,
    render,
)

# --- objectives ------------------------------------------------------------------------------------


def class_logit(model: Classifier, target: int) -> Objective:
    return Objective(lambda s: -s.run(model)[:, target].sum(), f"-logit[{target}]")


def cross_entropy(model: Classifier, target: int) -> Objective:
    return Objective(lambda s: F.cross_entropy(s.run(model), torch.full((s.image.shape[0],), target)),
                     f"CE[{target}]")


def l2_penalty(center: float = 127.5) -> Objective:
    return Objective(lambda s: ((s.image - center) / 255.0).pow(2).mean(), "L2")


def total_variation(beta: float = 2.0) -> Objective:
    return Objective(lambda s: tv_loss(s.image, beta), f"TV^{beta:g}")


def gram_match(net: LossNetwork, grams: dict[str, torch.Tensor]) -> Objective:
    return Objective(lambda s: style_loss(s.run(net), grams), "Gram")


def feature_match(net: LossNetwork, layer: str, target: torch.Tensor) -> Objective:
    return Objective(lambda s: content_loss(s.run(net)[layer], target), f"features[{layer}]")


def activation_energy(net: LossNetwork, layer: str) -> Objective:
    """-0.5 ||a||^2: its gradient with respect to the activation is the activation itself (DeepDream)."""
    return Objective(lambda s: -0.5 * s.run(net)[layer].pow(2).mean(), f"-|{layer}|^2")


# --- techniques ------------------------------------------------------------------------------------


def class_visualization(model: Classifier, target: int, size: int = 128, steps: int = 100, lr: float = 8.0,
                        l2: float = 1.0, blur_every: int = 10, blur_sigma: float = 0.5, jitter_px: int = 8,
                        seed: int = 0, progress=None) -> RenderResult:
    g = torch.Generator().manual_seed(seed)
    param = PixelImage(127.5 + 10 * torch.randn(1, 3, size, size, generator=g))
    return render(param, class_logit(model, target) + l2 * l2_penalty(), steps, optimizer=adam(lr),
                  transforms=[jitter(jitter_px)], project=[periodic_blur(blur_every, blur_sigma), clamp_pixels],
                  seed=seed, progress=progress)


def periodic_blur(every: int, sigma: float):
    """A projection that blurs the image every ``every`` steps (a smoothness prior; 0: never)."""
    count = {"n": 0}

    def blur(x: torch.Tensor) -> None:
        count["n"] += 1
        if every and count["n"] % every == 0:
            x.copy_(gaussian_blur(x, sigma))

    return blur


def channel_mean(net: torch.nn.Module, channel: int) -> Objective:
    """-mean of one channel over positions (Lucent's channel objective); ``net`` returns [B, C, H, W]."""
    return Objective(lambda s: -s.run(net)[:, channel].mean(), f"-mean[{channel}]")


def feature_visualization(net: torch.nn.Module, channel: int, size: int = 224, steps: int = 100, lr: float = 4.0,
                          l2: float = 1.0, blur_every: int = 4, blur_sigma: float = 0.5, jitter_px: int = 8,
                          scales: tuple[float, ...] = (1.0, 0.9, 1.1), seed: int = 0, progress=None,
                          start: torch.Tensor | None = None) -> RenderResult:
    """I* = argmax_I f(I) + R(I) for one channel of a layer: gradient ascent from noise, with an L2 penalty, a
    blur every few steps, and jitter and random rescaling (transformation robustness) before the network."""
    g = torch.Generator().manual_seed(seed)
    param = PixelImage(127.5 + 10 * torch.randn(1, 3, size, size, generator=g) if start is None else start)
    return render(param, channel_mean(net, channel) + l2 * l2_penalty(), steps, optimizer=adam(lr),
                  transforms=[jitter(jitter_px), random_scale(scales)],
                  project=[periodic_blur(blur_every, blur_sigma), clamp_pixels], seed=seed, progress=progress)


@dataclass
class FoolingResult:
    image: torch.Tensor
    steps: int
    fooled: bool
    linf: float
    l2: float
    before: int  # the class the classifier gave the image, and the one it gives the result
    after: int


def fooling_image(model: Classifier, image: torch.Tensor, target: int, epsilon: float = 2.0, steps: int = 50,
                  lr: float = 0.25, progress=None) -> FoolingResult:
    """Targeted: the smallest-effort perturbation (inside an L-inf ball of ``epsilon`` grey levels) that
    makes the classifier say ``target``; stops as soon as it does."""
    original = image.detach().clone()

    def project(x: torch.Tensor) -> None:
        x.copy_(original + (x - original).clamp(-epsilon, epsilon))
        x.clamp_(0, 255)

    def fooled(state, step) -> bool:
        return bool((model(state.image).argmax(1) == target).all())

    with torch.no_grad():
        before = model(original).argmax(1)
    if bool((before == target).all()):
        return FoolingResult(original, 0, True, 0.0, 0.0, int(before[0]), int(before[0]))
    param = PixelImage(original)
    r = render(param, cross_entropy(model, target), steps, optimizer=adam(lr), project=[project], stop=fooled,
               progress=progress)
    delta = r.image - original
    with torch.no_grad():
        after = model(r.image).argmax(1)
    return FoolingResult(r.image, r.steps, bool((after == target).all()), float(delta.abs().max()) / 255.0,
                         float(delta.flatten().norm()) / 255.0, int(before[0]), int(after[0]))


def deepdream(net: LossNetwork, image: torch.Tensor, layer: str = "relu3_3", steps: int = 20, lr: float = 2.0,
              octaves: int = 2, octave_scale: float = 1.4, jitter_px: int = 8, seed: int = 0,
              progress=None) -> RenderResult:
    """Amplify what a layer sees, from coarse to fine octaves (``steps`` per octave). Minimizing the
    negative activation energy makes the gradient at the layer equal to its activation."""
    h, w = image.shape[2:]
    x = image.detach().clone()
    losses: list[float] = []
    for o in reversed(range(octaves)):
        size = (max(16, int(h / octave_scale ** o)), max(16, int(w / octave_scale ** o)))
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        done = len(losses)
        report = None if progress is None else (lambda s, loss, img, done=done: progress(done + s, loss, img))
        r = render(PixelImage(x), activation_energy(net, layer), steps, optimizer=adam(lr),
                   transforms=[jitter(jitter_px)], seed=seed + o, progress=report)
        x, losses = r.image, losses + r.losses
        if r.stopped_early:
            return RenderResult(x, len(losses), losses, stopped_early=True)
    return RenderResult(x, len(losses), losses)


def feature_inversion(net: LossNetwork, image: torch.Tensor, layer: str = "relu2_2", steps: int = 100,
                      lr: float = 4.0, tv_weight: float = 1.0, beta: float = 2.0, seed: int = 0,
                      progress=None) -> RenderResult:
    """Reconstruct an image from one layer's features, regularized by total variation R_V^beta."""
    with torch.no_grad():
        target = net(image)[layer]
    g = torch.Generator().manual_seed(seed)
    param = PixelImage(127.5 + 10 * torch.randn(image.shape, generator=g))
    return render(param, feature_match(net, layer, target) + tv_weight * total_variation(beta), steps,
                  optimizer=adam(lr), seed=seed, progress=progress)


def texture_synthesis(net: LossNetwork, texture: torch.Tensor, size: int = 128, steps: int = 100, lr: float = 4.0,
                      seed: int = 0, progress=None) -> RenderResult:
    """A new image whose Gram matrices at the chosen layers match the texture's."""
    with torch.no_grad():
        grams = {k: gram_matrix(v) for k, v in net(texture).items()}
    g = torch.Generator().manual_seed(seed)
    param = PixelImage(127.5 + 10 * torch.randn(1, 3, size, size, generator=g))
    return render(param, gram_match(net, grams), steps, optimizer=adam(lr), seed=seed, progress=progress)


def gatys_transfer(net: LossNetwork, content: torch.Tensor, styles: list[torch.Tensor], weights: list[float],
                   content_weight: float = 4.0, style_weight: float = 1.5, tv_weight: float = 20.0,
                   content_layer: str = "relu2_2", steps: int = 100, lr: float = 4.0,
                   grams: dict[str, torch.Tensor] | None = None, progress=None) -> RenderResult:
    """Optimization-based style transfer with one or more weighted styles, starting from the content.
    ``grams`` gives precomputed style targets instead of ``styles``."""
    with torch.no_grad():
        target = net(content)[content_layer]
        mixed = dict(grams or {})
        for s, w in zip(styles, weights, strict=True):
            for k, v in net(s).items():
                mixed[k] = mixed.get(k, 0) + w / sum(weights) * gram_matrix(v)
    objective = (content_weight * feature_match(net, content_layer, target) + style_weight * gram_match(net, mixed)
                 + tv_weight * total_variation())
    return render(PixelImage(content), objective, steps, optimizer=adam(lr), progress=progress)
