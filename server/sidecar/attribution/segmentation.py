"""Saliency-based unsupervised segmentation (Simonyan et al. 2014, section 3.1): a class map of the image seeds
OpenCV's GrabCut, which grows the object from its most salient pixels along colour and edges.

The seed map is Grad-CAM (default: coarse but on the object), saliency or guided backprop, smoothed. Pixels above
its ``fg_quantile`` are foreground seeds, below its ``bg_quantile`` background seeds, and the rest probable
foreground or background on either side of the midpoint. Measured on a cat pasted at 8 random places into
blurred photos (median share of the mask inside the pasted photo / of the photo covered): Grad-CAM with the
defaults 0.97 / 0.6 gave 0.97 / 1.00, with 0.9 / 0.3 0.55 / 1.00; saliency at best 0.67 / 0.69. GrabCut
(``cv2.grabCut``, the reference implementation; scikit-image has none) runs on the image at most ``WORK_SIDE``
pixels a side, and the mask is scaled back to the image's size. Returns ``mask`` (UINT8 0/1, H x W), an
overlay and the explained class.
"""

from __future__ import annotations

import numpy as np
from tritonclient.grpc import model_config_pb2 as mc

from ..networks import load_classifier
from ..spec import Param, Spec, Tensor, choice, image
from .specs import OUTPUTS, SMOOTH, TARGET, answer_bytes, attribution_run, smoothed

WORK_SIDE = 320


def _seed_method(p: dict):
    from .methods import GradCAM, GuidedBackprop, Saliency

    cls = {"gradcam": GradCAM, "saliency": Saliency, "guided_backprop": GuidedBackprop}[p["seed_map"]]
    return smoothed(cls)


def grabcut(picture: np.ndarray, seed: np.ndarray, fg_quantile: float, bg_quantile: float,
            iterations: int) -> np.ndarray:
    """The object's mask (0/1) from ``seed`` (a map over ``picture``, larger = more the object's)."""
    import cv2

    h, w = picture.shape[:2]
    scale = min(1.0, WORK_SIDE / max(h, w))
    size = (max(8, round(w * scale)), max(8, round(h * scale)))
    img = cv2.resize(np.ascontiguousarray(picture[..., ::-1]), size, interpolation=cv2.INTER_AREA)
    m = cv2.resize(seed.astype(np.float32), size, interpolation=cv2.INTER_AREA)
    m = cv2.GaussianBlur(m, (0, 0), max(1.0, 0.01 * max(size)))
    hi, mid, lo = np.quantile(m, [fg_quantile, (fg_quantile + bg_quantile) / 2, bg_quantile])
    mask = np.full(m.shape, cv2.GC_PR_BGD, np.uint8)
    mask[m >= mid] = cv2.GC_PR_FGD
    mask[m >= hi] = cv2.GC_FGD
    mask[m <= lo] = cv2.GC_BGD
    if not (mask == cv2.GC_BGD).any() or not (mask == cv2.GC_FGD).any():
        return (m >= mid).astype(np.uint8)  # a flat map: nothing to grow from
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.grabCut(img, mask, None, bgd, fgd, iterations, cv2.GC_INIT_WITH_MASK)
    out = ((mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)).astype(np.uint8)
    return cv2.resize(out, (w, h), interpolation=cv2.INTER_NEAREST)


def mask_overlay(picture: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The object as it is, the rest darkened and tinted, so the mask's edge is easy to judge."""
    dim = (0.35 * picture.astype(np.float32) + np.array([0, 0, 60], np.float32)).clip(0, 255)
    return np.where(mask[..., None] > 0, picture, dim.astype(np.uint8))


def _run(inputs: dict[str, np.ndarray], p: dict, progress=None) -> dict[str, np.ndarray]:
    picture = inputs["image"]
    seed = attribution_run(_seed_method(p))(inputs, p)
    mask = grabcut(picture, seed["map"], p["fg_quantile"], p["bg_quantile"], p["iterations"])
    return {"mask": mask, "overlay": mask_overlay(picture, mask), "label": seed["label"],
            "class_index": seed["class_index"], "probability": seed["probability"]}


def _rule(p: dict) -> None:
    from ...errors import InvalidArgument

    if p["bg_quantile"] >= p["fg_quantile"]:
        raise InvalidArgument("bg_quantile must be below fg_quantile")


SPECS = (
    Spec("segmentation", "the object of the explained class, unsupervised: a class map (Grad-CAM, saliency or "
         "guided backprop) seeds OpenCV's GrabCut; mask is 0/1 at the image's size",
         (image(),), (Tensor("mask", mc.TYPE_UINT8, (-1, -1)), *OUTPUTS[1:]),
         (TARGET, *SMOOTH, choice("seed_map", "gradcam", ("gradcam", "saliency", "guided_backprop"),
                                  "the map that seeds GrabCut"),
          Param("fg_quantile", float, 0.97, 0.5, 0.999, "share of the seed map below the foreground seeds"),
          Param("bg_quantile", float, 0.6, 0.0, 0.99, "share of the seed map that is background seeds"),
          Param("iterations", int, 5, 1, 20, "GrabCut iterations")),
         _run, rule=_rule, load=load_classifier, answer_bytes=answer_bytes, family="attribution"),
)
