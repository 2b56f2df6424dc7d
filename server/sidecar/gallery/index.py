"""A gallery of images indexed once: penultimate features cached on disk, keyed by model and file content.
Serves k nearest neighbours, PCA / t-SNE maps and first-layer filters."""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..networks import Classifier

log = logging.getLogger(__name__)
THUMB = 64


def cache_dir() -> Path:
    return Path(os.environ.get("STYLECAST_CACHE", Path.home() / ".cache" / "stylecast"))


def penultimate(model: Classifier, x: torch.Tensor) -> torch.Tensor:
    """Features before the classifier layer (1280-d for EfficientNet-Lite0, FC7 for VGG16)."""
    with torch.no_grad():
        return model.features(x)


def _prepare(img: Image.Image, size: int = 224) -> torch.Tensor:
    img = img.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
    return torch.from_numpy(np.asarray(img, np.uint8).copy()).permute(2, 0, 1)[None].float()


@dataclass(eq=False)  # hashed by identity: per-gallery caches key on it
class Gallery:
    names: list[str]
    features: np.ndarray  # [N, D], L2-normalized
    thumbs: np.ndarray  # [N, THUMB, THUMB, 3] uint8
    paths: list[Path] = field(default_factory=list)
    digests: list[str] = field(default_factory=list)  # of each file's bytes: keys for derived caches

    def knn(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Indices and cosine distances of the k nearest gallery images."""
        q = query / max(np.linalg.norm(query), 1e-12)
        d = 1.0 - self.features @ q
        idx = np.argsort(d)[:k]
        return idx, d[idx]

    def embed(self, method: str = "pca", seed: int = 0) -> np.ndarray:
        """2-D coordinates of every gallery image (scikit-learn PCA or t-SNE), scaled to [0, 1]."""
        from sklearn.decomposition import PCA

        if method == "pca":
            xy = PCA(2, random_state=seed).fit_transform(self.features)
        elif method == "tsne":
            from sklearn.manifold import TSNE

            init = PCA(min(50, len(self.names) - 1), random_state=seed).fit_transform(self.features)
            xy = TSNE(2, perplexity=min(30.0, (len(self.names) - 1) / 3), random_state=seed,
                      init="pca").fit_transform(init)
        else:
            raise ValueError(f"method must be 'pca' or 'tsne', got {method!r}")
        xy = xy - xy.min(0)
        return (xy / np.maximum(xy.max(0), 1e-12)).astype(np.float32)

    def scatter(self, xy: np.ndarray, size: int = 1024) -> np.ndarray:
        """A picture with every thumbnail at its 2-D position."""
        canvas = np.full((size, size, 3), 255, np.uint8)
        span = size - THUMB
        for (x, y), t in zip(xy, self.thumbs, strict=True):
            i, j = int(y * span), int(x * span)
            canvas[i:i + THUMB, j:j + THUMB] = t
        return canvas


def index_gallery(model: Classifier, paths: list[Path], batch: int = 16) -> Gallery:
    """Features for each file, read from the cache when the model and the file's bytes are unchanged."""
    root = cache_dir() / "gallery" / model.name
    root.mkdir(parents=True, exist_ok=True)
    names, feats, thumbs, todo, digests = [], [], [], [], []
    for p in paths:
        digest = hashlib.sha256(p.read_bytes()).hexdigest()[:32]
        digests.append(digest)
        cached = root / f"{digest}.npz"
        names.append(p.name)
        if cached.exists():
            z = np.load(cached)
            feats.append(z["feature"])
            thumbs.append(z["thumb"])
        else:
            feats.append(None)
            thumbs.append(None)
            todo.append((len(names) - 1, p, cached))
    for k in range(0, len(todo), batch):
        chunk = todo[k:k + batch]
        imgs = [Image.open(p) for _, p, _ in chunk]
        f = penultimate(model, torch.cat([_prepare(im) for im in imgs])).numpy()
        for (i, _, cached), feat, im in zip(chunk, f, imgs, strict=True):
            thumb = np.asarray(im.convert("RGB").resize((THUMB, THUMB)), np.uint8)
            np.savez(cached, feature=feat, thumb=thumb)
            feats[i], thumbs[i] = feat, thumb
    log.info("gallery: %d images (%d computed, %d from cache %s)", len(paths), len(todo), len(paths) - len(todo),
             root)
    f = np.stack(feats).astype(np.float32)
    f /= np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)
    return Gallery(names, f, np.stack(thumbs), list(paths), digests)


def default_gallery(folder: str | None = None) -> Gallery:
    """``folder`` (or $STYLECAST_GALLERY), else the natural photos bundled in installed packages."""
    return _gallery(folder or os.environ.get("STYLECAST_GALLERY"))


@lru_cache(maxsize=4)
def _gallery(folder: str | None) -> Gallery:
    from stylecast.nets.images import bundled_photos, list_images

    from ..networks import load_classifier

    paths = list_images(folder) if folder else [p for _, p in bundled_photos()]
    return index_gallery(load_classifier(), paths)


def neighbours_picture(query: np.ndarray, gallery: Gallery, idx: np.ndarray) -> np.ndarray:
    """The query then its neighbours, as one strip of thumbnails."""
    q = np.asarray(Image.fromarray(query).resize((THUMB, THUMB)), np.uint8)
    strip = [q] + [gallery.thumbs[i] for i in idx]
    return np.concatenate([np.pad(t, ((2, 2), (2, 2), (0, 0)), constant_values=255) for t in strip], axis=1)


def first_conv(net: torch.nn.Module) -> torch.nn.Conv2d:
    return next(m for m in net.modules() if isinstance(m, torch.nn.Conv2d))


def first_layer_filters(net: torch.nn.Module, scale: int = 8) -> np.ndarray:
    """The first conv layer's kernels as an image grid (each kernel min-max scaled to 0..255)."""
    w = first_conv(net).weight.detach()
    n = w.shape[0]
    cols = int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    k = w.shape[-1] * scale
    grid = np.full((rows * (k + 2), cols * (k + 2), 3), 255, np.uint8)
    for i in range(n):
        f = w[i, :3].permute(1, 2, 0).numpy()
        f = (f - f.min()) / max(f.max() - f.min(), 1e-12) * 255
        f = np.kron(f, np.ones((scale, scale, 1))).astype(np.uint8)
        r, c = divmod(i, cols)
        grid[r * (k + 2):r * (k + 2) + k, c * (k + 2):c * (k + 2) + k] = f
    return grid


def receptive_field(layer: str) -> tuple[int, int]:
    """(size, stride) in input pixels of one unit of a VGG16 layer, from the layer sequence."""
    from stylecast.nets.vgg import LAYER_INDEX, build_vgg16_features

    size, jump = 1, 1
    for i, m in enumerate(build_vgg16_features()):
        if i > LAYER_INDEX[layer]:
            break
        if isinstance(m, torch.nn.Conv2d):
            size += (m.kernel_size[0] - 1) * jump
        elif isinstance(m, torch.nn.MaxPool2d):
            size += (m.kernel_size - 1) * jump
            jump *= m.stride
    return size, jump


@dataclass
class UnitMaxima:
    """For every gallery image and every channel of one layer: the strongest activation and where it is."""

    values: np.ndarray  # [N, C]
    rows: np.ndarray  # [N, C]
    cols: np.ndarray  # [N, C]


def _maxima_path(vgg, gallery: Gallery, layer: str, side: int) -> Path:
    key = hashlib.sha256("".join(gallery.digests).encode()).hexdigest()[:24]
    return cache_dir() / "units" / f"vgg16-{vgg.weights_kind}-{layer}-{side}-{key}.npz"


def cached_unit_maxima(vgg, gallery: Gallery, layers: tuple[str, ...], side: int = 224,
                       stop: threading.Event | None = None) -> dict[str, UnitMaxima]:
    """``unit_maxima`` of the gallery for ``layers``, stored on disk keyed by the weights, the layer and the
    files' bytes; the layers not on disk yet come from one pass over the gallery (``stop``: see there)."""
    paths = {layer: _maxima_path(vgg, gallery, layer, side) for layer in layers}
    out: dict[str, UnitMaxima] = {}
    for layer, path in paths.items():
        if path.exists():
            z = np.load(path)
            out[layer] = UnitMaxima(z["values"], z["rows"], z["cols"])
    todo = tuple(n for n in layers if n not in out)
    if todo:
        for layer, m in unit_maxima(vgg, gallery.paths, todo, side, stop=stop).items():
            paths[layer].parent.mkdir(parents=True, exist_ok=True)
            np.savez(paths[layer], values=m.values, rows=m.rows, cols=m.cols)
            out[layer] = m
    return out


class ScanStopped(Exception):
    """A gallery scan stopped before its end (nothing of it is kept)."""


def unit_maxima(vgg, paths: list[Path], layers: tuple[str, ...], side: int = 224, batch: int = 8,
                stop: threading.Event | None = None) -> dict[str, UnitMaxima]:
    """One pass over the gallery answers every channel of every layer in ``layers``; once ``stop`` is set, the
    pass ends after its current batch with :class:`ScanStopped`."""
    log.info("max-activating patches: scanning %d gallery images at %s", len(paths), ", ".join(layers))
    parts: dict[str, tuple[list, list, list]] = {n: ([], [], []) for n in layers}
    for k in range(0, len(paths), batch):
        if stop is not None and stop.is_set():
            raise ScanStopped(f"gallery scan stopped after {k} of {len(paths)} images")
        x = torch.cat([_prepare(Image.open(p), side) for p in paths[k:k + batch]])
        with torch.no_grad():
            feats = vgg(x)
        for layer, (values, rows, cols) in parts.items():
            a = feats[layer]
            v, flat = a.flatten(2).max(2)
            values.append(v.numpy())
            rows.append((flat // a.shape[3]).numpy())
            cols.append((flat % a.shape[3]).numpy())
    return {n: UnitMaxima(*(np.concatenate(part) for part in parts[n])) for n in layers}


def max_activating_patches(vgg, paths: list[Path], layer: str, channel: int, k: int = 9, side: int = 224,
                           maxima: UnitMaxima | None = None) -> tuple[list[np.ndarray], list[float], list[int]]:
    """The k gallery images whose strongest response of one channel is highest, each cropped to the
    receptive field of that unit: (patches, scores, gallery indices)."""
    size, jump = receptive_field(layer)
    m = maxima or unit_maxima(vgg, paths, (layer,), side)[layer]
    order = np.argsort(-m.values[:, channel], kind="stable")[:k]
    patches, scores = [], []
    for n in order:
        i, j = int(m.rows[n, channel]), int(m.cols[n, channel])
        cy, cx = i * jump + jump // 2, j * jump + jump // 2
        y0, x0 = max(0, cy - size // 2), max(0, cx - size // 2)
        image = _prepare(Image.open(paths[n]), side)
        patches.append(image[0, :, y0:y0 + size, x0:x0 + size].permute(1, 2, 0).byte().numpy())
        scores.append(float(m.values[n, channel]))
    return patches, scores, [int(n) for n in order]


def tile(images: list[np.ndarray], cell: int, cols: int | None = None) -> np.ndarray:
    """Images on a white grid, each resized to fit a ``cell`` square."""
    cols = cols or int(np.ceil(np.sqrt(len(images))))
    rows = int(np.ceil(len(images) / cols))
    grid = np.full((rows * (cell + 4), cols * (cell + 4), 3), 255, np.uint8)
    for n, im in enumerate(images):
        r, c = divmod(n, cols)
        t = np.asarray(Image.fromarray(im).resize((cell, cell), Image.Resampling.NEAREST))
        grid[r * (cell + 4) + 2:r * (cell + 4) + 2 + cell, c * (cell + 4) + 2:c * (cell + 4) + 2 + cell] = t
    return grid
