"""Image conversions and inference options applied on the client (numpy and Pillow only)."""

from __future__ import annotations

import numpy as np
from PIL import Image


def to_array(image) -> np.ndarray:
    """PIL image or array -> contiguous uint8 [H, W, 3] RGB."""
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"), dtype=np.uint8)
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise ValueError(f"expected an image of shape [H, W, 3], got {arr.shape}")
    if arr.dtype != np.uint8:
        raise ValueError(f"expected uint8 pixels, got {arr.dtype}; convert with np.clip(x, 0, 255).astype(np.uint8)")
    return np.ascontiguousarray(arr[:, :, :3])


def like_input(result: np.ndarray, original):
    """Return a PIL image when the caller passed one, else the array."""
    return Image.fromarray(result) if isinstance(original, Image.Image) else result


def blend_strength(content: np.ndarray, stylized: np.ndarray, strength: float) -> np.ndarray:
    """Style strength: 1 = fully stylized, 0 = the content photo."""
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength must be in [0, 1], got {strength}")
    if strength == 1.0:
        return stylized
    mix = strength * stylized.astype(np.float32) + (1.0 - strength) * content.astype(np.float32)
    return np.clip(np.rint(mix), 0, 255).astype(np.uint8)


def keep_subject(photo: np.ndarray, stylized: np.ndarray, mask: np.ndarray, feather: float = 0.015) -> np.ndarray:
    """The photo where ``mask`` (0/1, the subject) is set, the stylized image elsewhere, with a soft edge of
    about ``feather`` x the image's long side."""
    from PIL import ImageFilter

    radius = max(1.0, feather * max(mask.shape))
    soft = np.asarray(Image.fromarray((mask > 0).astype(np.uint8) * 255).filter(ImageFilter.GaussianBlur(radius)))
    a = (soft.astype(np.float32) / 255.0)[..., None]
    return np.clip(a * photo + (1 - a) * stylized, 0, 255).round().astype(np.uint8)


def preserve_color(content: np.ndarray, stylized: np.ndarray) -> np.ndarray:
    """Keep the content's colours: luminance from the stylized image, chroma from the content (YCbCr)."""
    y = np.asarray(Image.fromarray(stylized).convert("YCbCr"))[:, :, 0]
    cbcr = np.asarray(Image.fromarray(content).convert("YCbCr"))[:, :, 1:]
    ycc = np.concatenate([y[:, :, None], cbcr], axis=2)
    return np.asarray(Image.fromarray(ycc, mode="YCbCr").convert("RGB"))


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType sizes
        return ImageFont.load_default()


def caption(image, text: str, size: int = 14) -> Image.Image:
    """The image with ``text`` on a dark band along its bottom edge (labels on galleries and the demo)."""
    from PIL import ImageDraw

    img = (image if isinstance(image, Image.Image) else Image.fromarray(to_array(image))).convert("RGB").copy()
    band = size + 8
    draw = ImageDraw.Draw(img, "RGBA")
    draw.rectangle((0, img.height - band, img.width, img.height), fill=(0, 0, 0, 170))
    draw.text((5, img.height - band + 3), text, fill=(255, 255, 255), font=_font(size))
    return img


def contact_sheet(rows: list[list], column_labels: list[str], row_labels: list[str], tile: int,
                  size: int = 14) -> Image.Image:
    """A grid of square tiles (arrays or images; None leaves a blank), column labels above it and each row's
    label on its first tile."""
    from PIL import ImageDraw

    head = size + 10
    cols = max(len(r) for r in rows)
    sheet = Image.new("RGB", (cols * tile, head + len(rows) * tile), "white")
    draw = ImageDraw.Draw(sheet)
    for k, text in enumerate(column_labels):
        draw.text((k * tile + 4, 4), text, fill=(0, 0, 0), font=_font(size))
    for r, row in enumerate(rows):
        for k, im in enumerate(row):
            if im is None:
                continue
            im = im if isinstance(im, Image.Image) else Image.fromarray(im)
            if k == 0 and r < len(row_labels) and row_labels[r]:
                im = caption(im, row_labels[r], max(10, size - 3))
            sheet.paste(im.resize((tile, tile)), (k * tile, head + r * tile))
    return sheet
