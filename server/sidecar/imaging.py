"""Pictures a person wants to look at: heat-map overlays (numpy only)."""

from __future__ import annotations

import numpy as np

# A perceptually ordered dark-to-bright colormap (anchors of matplotlib's 'inferno').
_ANCHORS = np.array([[0, 0, 4], [40, 11, 84], [101, 21, 110], [159, 42, 99], [212, 72, 66], [245, 125, 21],
                     [250, 193, 39], [252, 255, 164]], np.float32)


def colormap(values: np.ndarray) -> np.ndarray:
    """[H, W] in [0, 1] -> [H, W, 3] uint8."""
    v = np.clip(values, 0, 1) * (len(_ANCHORS) - 1)
    lo = np.floor(v).astype(int).clip(0, len(_ANCHORS) - 2)
    t = (v - lo)[..., None]
    return ((1 - t) * _ANCHORS[lo] + t * _ANCHORS[lo + 1]).astype(np.uint8)


def normalize(amap: np.ndarray) -> np.ndarray:
    lo, hi = float(amap.min()), float(np.percentile(amap, 99.5))
    return np.clip((amap - lo) / (hi - lo if hi > lo else 1.0), 0, 1)


def heat_overlay(image: np.ndarray, amap: np.ndarray, alpha: float = 0.55) -> np.ndarray:
    heat = colormap(normalize(amap)).astype(np.float32)
    return np.clip((1 - alpha) * image.astype(np.float32) + alpha * heat, 0, 255).astype(np.uint8)
