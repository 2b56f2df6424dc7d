"""Pure perceptual-loss helpers shared by training and the sidecar's optimization techniques."""

from __future__ import annotations

import torch
from torch.nn import functional as F


def gram_matrix(features: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """[B, C, H, W] -> [B, C, C] Gram matrix normalized by C*H*W (computed in fp32).

    With ``mask`` ([H', W'], 1 where a position counts), the mean runs over the positions whose whole cell
    the mask keeps: a left-out region changes no statistic, not even through a cell it touches.
    """
    b, c, h, w = features.shape
    f = features.float().reshape(b, c, h * w)
    if mask is None:
        return f @ f.transpose(1, 2) / (c * h * w)
    m = F.interpolate(mask[None, None].float(), size=(h, w), mode="area").reshape(1, 1, h * w)
    m = (m > 0.999).to(f.dtype)
    return (f * m) @ f.transpose(1, 2) / (c * m.sum().clamp(min=1.0))


def relative_mse(x: torch.Tensor, target: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Per-sample mean squared error divided by ``scale`` (per sample, e.g. the target's mean square).

    The bundled VGG's layers differ in scale by six orders of magnitude; dividing each layer's
    error by its target's energy makes the per-layer weights meaningful.
    """
    err = (x.float() - target.float()).pow(2).flatten(1).mean(1)
    return err / scale


def energy(t: torch.Tensor) -> torch.Tensor:
    """Per-sample mean square, with a floor so an all-zero target cannot divide by zero."""
    return t.float().pow(2).flatten(1).mean(1).clamp_min(1e-12)


def luminance(img: torch.Tensor) -> torch.Tensor:
    """[B, 3, H, W] RGB -> the same image in grey (Rec. 601 luma in all three channels)."""
    w = img.new_tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    return (img * w).sum(1, keepdim=True).expand_as(img)


def content_loss(features: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Relative feature reconstruction error, averaged over the batch (each sample times ``weights``, [B])."""
    err = relative_mse(features, target, energy(target))
    return (err if weights is None else err * weights).mean()


def style_loss(
    features: dict[str, torch.Tensor], target_grams: dict[str, torch.Tensor],
    layer_weights: dict[str, float] | None = None,
) -> torch.Tensor:
    """Sum over layers of the relative Gram error; ``target_grams[l]`` is [B or 1, C, C]."""
    total = torch.zeros((), device=next(iter(features.values())).device)
    for name, g_target in target_grams.items():
        g = gram_matrix(features[name])
        g_t = g_target.expand_as(g)
        w = 1.0 if layer_weights is None else layer_weights.get(name, 1.0)
        total = total + w * relative_mse(g, g_t, energy(g_t)).mean()
    return total


def tv_loss(img: torch.Tensor, beta: float = 2.0) -> torch.Tensor:
    """Total variation R_V^beta of an image batch on the 0..255 scale, normalized to 0..1 units."""
    x = img.float() / 255.0
    dh = x[:, :, 1:, :-1] - x[:, :, :-1, :-1]
    dw = x[:, :, :-1, 1:] - x[:, :, :-1, :-1]
    return (dh.pow(2) + dw.pow(2)).pow(beta / 2).mean()


def yellowness(img: torch.Tensor) -> torch.Tensor:
    """[B, 3, H, W] 0..255 -> [B, 1, H, W] 0..1: how far the darker of red and green lies above blue."""
    x = img.float() / 255.0
    return torch.relu(torch.minimum(x[:, :1], x[:, 1:2]) - x[:, 2:3])


def spot_loss(y: torch.Tensor, x: torch.Tensor, core: int = 9, surround: int = 41,
              threshold: float = 0.25) -> torch.Tensor:
    """Yellow spots in the output ``y`` that the photo ``x`` does not have.

    A Gram loss can be met by stamping a painting's motif (composition_viii's yellow circles) onto the
    brightest regions of every photo. The yellowness, smoothed over ``core`` px (fine yellow strokes average
    out), above its mean over ``surround`` px and beyond the photo's own, is a spot where it exceeds
    ``threshold``; the loss is the mean square of that excess. A yellow wash, yellow strokes or the photo's
    own yellow flower cost nothing."""
    def excess(img: torch.Tensor) -> torch.Tensor:
        t = F.avg_pool2d(yellowness(img), core, stride=1, padding=core // 2, count_include_pad=False)
        return torch.relu(t - F.avg_pool2d(t, surround, stride=1, padding=surround // 2, count_include_pad=False))

    return torch.relu(excess(y) - excess(x) - threshold).pow(2).mean()


DROPLET_THRESHOLD = 3.0  # root-mean-square z: ordinary positions stay under about 2.6, droplets reach 6 to 30


def droplet_strength(features: torch.Tensor) -> torch.Tensor:
    """[B, C, H, W] -> [B, H, W]: the root mean square over channels of each channel's z-score (its value
    over its spatial mean, in its spatial standard deviations). 1 on average by construction.

    Instance norm takes each feature map's mean and variance away, so a network that wants to carry them past
    it concentrates channels into one spike (the "droplet" of Karras et al. 2020, StyleGAN2, section 2),
    and the decoder paints that spot as a round stamp. In starter8 the positions under a stamp measure 6 to
    30 in the deep layers, where 99% of positions stay under 2. The square keeps the measure from being
    met by spiking some channels up and others down, which a channel mean would miss.
    """
    f = features.float()
    z = (f - f.mean((2, 3), keepdim=True)) / (f.std((2, 3), keepdim=True) + 1e-5)
    return z.pow(2).mean(1).sqrt()


def droplet_loss(features: list[torch.Tensor], margin: float = 0.0,
                 threshold: float = DROPLET_THRESHOLD) -> torch.Tensor:
    """Droplets inside the picture: per sample and map, the squared relative excess of the peak droplet
    strength over ``threshold``, averaged. ``margin`` (a fraction of each side, the served network's
    replicated margin) is left out: a spike there is cropped away with it, so the network may keep its
    droplet where no one sees it."""
    total = features[0].new_zeros((), dtype=torch.float32)
    for f in features:
        s = droplet_strength(f)
        mh, mw = round(s.shape[1] * margin), round(s.shape[2] * margin)
        inside = s[:, mh:s.shape[1] - mh, mw:s.shape[2] - mw]
        total = total + torch.relu(inside.flatten(1).amax(1) / threshold - 1).pow(2).mean()
    return total / len(features)
