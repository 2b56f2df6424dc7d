"""A real photo on a plain background, for checking that attribution maps fall on the object."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

STYLES = Path(__file__).resolve().parent.parent / "styles"  # the shipped paintings

BOX = (120, 40, 280, 200)  # left, top, right, bottom of the pasted photo on a 320x320 grey canvas


def cat_on_grey() -> np.ndarray:
    from stylecast.nets.images import bundled_photos

    cat = Image.open(dict(bundled_photos())["skimage_chelsea"]).convert("RGB")
    s = min(cat.size)
    cat = cat.crop(((cat.width - s) // 2, 0, (cat.width + s) // 2, s)).resize((BOX[2] - BOX[0], BOX[3] - BOX[1]))
    canvas = Image.new("RGB", (320, 320), (128, 128, 128))
    canvas.paste(cat, BOX[:2])
    return np.asarray(canvas)


def mass_inside(amap: np.ndarray) -> float:
    """Share of the map's positive mass inside the pasted photo."""
    m = np.clip(amap, 0, None)
    left, top, right, bottom = BOX
    return float(m[top:bottom, left:right].sum() / m.sum())


def copy_photos(photos: list[tuple[str, Path]], folder: Path) -> Path:
    """(name, path) photos, as bundled_photos() lists them, copied into ``folder`` under their names."""
    for name, path in photos:
        (folder / f"{name}{path.suffix}").write_bytes(path.read_bytes())
    return folder
