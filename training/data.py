"""Training images: random resized crops and flips of a folder of photos, style targets from paintings, and
the starter set."""

from __future__ import annotations

import json
import logging
import math
import queue
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError
from stylecast.nets.images import bundled_photos, fit_within, is_held_out, list_images, load_rgb, to_uint8_tensor

log = logging.getLogger(__name__)


# Scans of paintings carry their frame's shadow and the canvas edge (starry_night: a black band and a
# beige line, 2% wide). In a Gram target those are style, and a network learns to paint them along its own
# borders; the inner part of the painting is the style.
PAINTING_INSET = 0.03
# A painting's folder may hold targets.json, saying per file what of it the style target leaves out:
# more off one side, in fractions ({"shrine_in_snow.jpg": {"top": 0.075}}: the print's dark top margin,
# which a network otherwise paints as a dark band along the top of every photo), and discs, as
# [x, y, r] in fractions of the painting's width, height and width ({"leave_out": [[0.12, 0.19, 0.15]]}:
# composition_viii's circles, which a network otherwise stamps onto photos). Judges use the whole painting.
TARGETS_FILE = "targets.json"
SIDES = ("left", "top", "right", "bottom")
LEAVE_OUT = "leave_out"


def _targets(path: Path) -> dict:
    table = path.parent / TARGETS_FILE
    entry = json.loads(table.read_text()).get(path.name, {}) if table.is_file() else {}
    unknown = set(entry) - set(SIDES) - {LEAVE_OUT}
    if unknown:
        raise ValueError(f"{table}: unknown keys {sorted(unknown)} for {path.name}; use {', '.join(SIDES)} "
                         f"or {LEAVE_OUT}")
    return entry


def painting_insets(path: str | Path) -> dict[str, float]:
    """The fraction cut from each side of the painting at ``path``: PAINTING_INSET, or more from targets.json."""
    extra = _targets(Path(path))
    return {side: max(PAINTING_INSET, float(extra.get(side, 0.0))) for side in SIDES}


def _inset_box(path: str | Path, w: int, h: int) -> tuple[int, int, int, int]:
    f = painting_insets(path)
    return round(w * f["left"]), round(h * f["top"]), w - round(w * f["right"]), h - round(h * f["bottom"])


def load_painting(path: str | Path, max_side: int | None = None) -> Image.Image:
    """A style image without its outer ``painting_insets`` on every side, at most ``max_side`` px long."""
    img = load_rgb(path)
    return fit_within(img.crop(_inset_box(path, *img.size)), max_side)


def painting_mask(path: str | Path, max_side: int | None = None) -> torch.Tensor | None:
    """[H, W] float mask of ``load_painting(path, max_side)``: 0 inside the discs targets.json leaves out,
    1 elsewhere; None when nothing is left out."""
    discs = _targets(Path(path)).get(LEAVE_OUT)
    if not discs:
        return None
    with Image.open(path) as img:
        w, h = img.size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    keep = np.ones((h, w), np.uint8)
    for x, y, r in discs:
        keep[(xx - x * w) ** 2 + (yy - y * h) ** 2 <= (r * w) ** 2] = 0
    mask = fit_within(Image.fromarray(keep * 255).crop(_inset_box(path, w, h)), max_side)
    return torch.from_numpy(np.asarray(mask, dtype=np.float32) / 255.0)


class ImageFolder:
    """All readable images under a folder, decoded once into memory at a bounded size, as [3, H, W]
    uint8 tensors (at most max_side**2 * 3 bytes each: the data set must fit in memory).

    Unreadable files are skipped with a warning, so a bad file never stops a training run.
    """

    def __init__(self, root: str | Path, max_side: int = 512) -> None:
        self.images: list[torch.Tensor] = []
        self.paths: list[Path] = []
        for p in list_images(root):
            try:
                self.images.append(to_uint8_tensor(load_rgb(p, max_side)))
                self.paths.append(p)
            except (OSError, UnidentifiedImageError, ValueError) as e:
                log.warning("skipping unreadable image %s: %s", p, e)
        if not self.images:
            raise ValueError(f"no readable images under {root}")
        log.info("loaded %d training images from %s", len(self.images), root)

    def __len__(self) -> int:
        return len(self.images)

    def tensors(self, device: torch.device | str = "cpu") -> list[torch.Tensor]:
        """The images on ``device`` (the same tensors on the CPU, copies elsewhere)."""
        return [img.to(device) for img in self.images]


def crop_box(w: int, h: int, gen: torch.Generator, scale: tuple[float, float] = (0.25, 1.0)) -> tuple[int, ...]:
    """A random (x0, y0, width, height) covering ``scale`` of the area at an aspect ratio in [3/4, 4/3]."""
    area = w * h
    for _ in range(10):
        target = area * float(torch.empty(1).uniform_(*scale, generator=gen))
        ratio = math.exp(float(torch.empty(1).uniform_(math.log(3 / 4), math.log(4 / 3), generator=gen)))
        cw, ch = round(math.sqrt(target * ratio)), round(math.sqrt(target / ratio))
        if 0 < cw <= w and 0 < ch <= h:
            x0 = int(torch.randint(0, w - cw + 1, (1,), generator=gen))
            y0 = int(torch.randint(0, h - ch + 1, (1,), generator=gen))
            return x0, y0, cw, ch
    s = min(w, h)
    return (w - s) // 2, (h - s) // 2, s, s


def resize_square(img: torch.Tensor, size: int) -> torch.Tensor:
    """[3, H, W] (any dtype) -> [3, size, size] float 0..255, bilinear with antialiasing."""
    return F.interpolate(img[None].float(), size=(size, size), mode="bilinear", antialias=True,
                         align_corners=False)[0]


def random_resized_crop(img: torch.Tensor, size: int, gen: torch.Generator) -> torch.Tensor:
    """[3, H, W] uint8 -> [3, size, size] float 0..255: a random crop, resized with antialiasing."""
    x0, y0, cw, ch = crop_box(img.shape[2], img.shape[1], gen)
    return resize_square(img[:, y0:y0 + ch, x0:x0 + cw], size)


def batches(data: ImageFolder, batch_size: int, size: int, gen: torch.Generator,
            device: torch.device | str = "cpu") -> Iterator[torch.Tensor]:
    """Endless [B, 3, size, size] batches of random crops with random horizontal flips, built on
    ``device`` from images kept there (on a GPU no per-sample work is left to the CPU)."""
    images = data.tensors(device)
    while True:
        out = []
        for _ in range(batch_size):
            i = int(torch.randint(0, len(data), (1,), generator=gen))
            t = random_resized_crop(images[i], size, gen)
            if bool(torch.rand(1, generator=gen) < 0.5):
                t = t.flip(2)
            out.append(t)
        yield torch.stack(out)


class Prefetcher:
    """Random-crop batches built on a background thread, a few ahead of the training step.

    The crops overlap the previous step's compute instead of holding it up. Every batch comes with
    the generator state just after it was drawn: a checkpoint saves the state of the last batch
    consumed, so a resumed run sees exactly the batches it would have.
    """

    def __init__(self, data: ImageFolder, batch_size: int, size: int, gen: torch.Generator,
                 device: torch.device | str = "cpu", depth: int = 4) -> None:
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._fill, args=(batches(data, batch_size, size, gen, device), gen),
                                        daemon=True)
        self._thread.start()

    def _fill(self, stream: Iterator[torch.Tensor], gen: torch.Generator) -> None:
        try:
            for batch in stream:
                item = (batch, gen.get_state())
                while not self._stop.is_set():
                    try:
                        self._queue.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if self._stop.is_set():
                    return
        except BaseException as e:  # surfaced to the consumer, never lost in the thread
            self._queue.put(e)

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor]:
        item = self._queue.get()
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def gather_starter(dest: str | Path, holdout: int = 12) -> tuple[Path, Path]:
    """Copy bundled photos into dest/train and dest/eval (every k-th photo held out)."""
    dest = Path(dest)
    photos = bundled_photos()
    if not photos:
        raise RuntimeError("no bundled photos found: install scikit-learn, scikit-image, ai-benchmark")
    train, evald = dest / "train", dest / "eval"
    train.mkdir(parents=True, exist_ok=True)
    evald.mkdir(parents=True, exist_ok=True)
    for i, (name, path) in enumerate(photos):
        target = evald if is_held_out(i, len(photos), holdout) else train
        shutil.copyfile(path, target / f"{name}{path.suffix.lower()}")
    log.info("starter set: %d train, %d eval photos in %s",
             len(list_images(train)), len(list_images(evald)), dest)
    return train, evald
