"""Images as every part reads them: any folder of pictures, one decoded RGB picture at a bounded size, as
tensors, and the natural photos bundled inside installed wheels (the starter set and the sidecar's gallery)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch
from PIL import Image

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif"}


def list_images(root: str | Path) -> list[Path]:
    root = Path(root)
    if root.is_file():
        return [root]
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def fit_within(img: Image.Image, max_side: int | None) -> Image.Image:
    if max_side and max(img.size) > max_side:
        img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return img


def load_rgb(path: str | Path, max_side: int | None = None) -> Image.Image:
    img = Image.open(path)
    img.load()
    return fit_within(img.convert("RGB"), max_side)


def to_uint8_tensor(img: Image.Image) -> torch.Tensor:
    """PIL RGB -> [3, H, W] uint8."""
    return torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1)


def to_tensor(img: Image.Image) -> torch.Tensor:
    """PIL RGB -> [3, H, W] float 0..255."""
    return to_uint8_tensor(img).float()


# --- starter content set: natural photos bundled in installed packages -------------------------

def _package_dir(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def bundled_photos() -> list[tuple[str, Path]]:
    """(name, path) of natural photos shipped inside installed wheels; missing packages are skipped."""
    found: list[tuple[str, Path]] = []
    sk = _package_dir("sklearn")
    if sk:
        for f in ("china.jpg", "flower.jpg"):
            p = sk / "datasets" / "images" / f
            if p.exists():
                found.append((f"sklearn_{p.stem}", p))
    ski = _package_dir("skimage")
    if ski:
        for f in ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png",
                  "hubble_deep_field.jpg"):
            p = ski / "data" / f
            if p.exists():
                found.append((f"skimage_{p.stem}", p))
    mpl = _package_dir("matplotlib")
    if mpl:
        p = mpl / "mpl-data" / "sample_data" / "grace_hopper.jpg"
        if p.exists():
            found.append(("mpl_grace_hopper", p))
    ab = _package_dir("ai_benchmark")
    if ab:
        for sub in ("classification", "enhancement"):
            for p in list_images(ab / "data" / sub):
                found.append((f"aib_{sub}_{p.stem}", p))
    return found


def is_held_out(i: int, n: int, holdout: int) -> bool:
    step = max(1, n // max(1, holdout))
    return bool(holdout) and i % step == step // 2 and i // step < holdout


def heldout_photos(holdout: int = 12) -> list[tuple[str, Path]]:
    """The bundled photos ``stylecast data starter`` holds out for evaluation (never trained on)."""
    photos = bundled_photos()
    return [p for i, p in enumerate(photos) if is_held_out(i, len(photos), holdout)]
