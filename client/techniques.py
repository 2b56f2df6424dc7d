"""Typed results for the sidecar's techniques. ``Client`` inherits these methods; each is one call to a
technique model (see its ModelConfig for every parameter, default and bound)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from .imaging import to_array

Progress = Callable[[int, float, "np.ndarray | None"], "bool | None"]


@dataclass(frozen=True)
class Optimized:
    """The result of an iterative technique: the image, the steps run, every streamed loss, and the
    technique's other outputs (for fooling: label, linf, l2)."""

    image: np.ndarray
    steps: int
    losses: list[float] = field(default_factory=list)
    extra: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class GalleryView:
    """A gallery technique's answer: a picture to look at, the gallery names it refers to, and its numbers
    (kNN distances, patch scores, or [N, 2] embedding coordinates); ``patches`` for max-activating patches."""

    picture: np.ndarray
    names: list[str]
    values: np.ndarray
    patches: np.ndarray | None = None


def _text(values: np.ndarray) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values.reshape(-1)]


def _scalar(v: np.ndarray) -> object:
    x = v.reshape(-1)[0]
    return x.decode() if isinstance(x, bytes) else x.item()


def common_size(images: Sequence, side: int) -> np.ndarray:
    """Style images as one batch: each resized to ``side`` x ``side`` (Gram statistics barely depend on
    the aspect ratio)."""
    return np.stack([np.asarray(Image.fromarray(to_array(im)).resize((side, side), Image.Resampling.LANCZOS))
                     for im in images])


class TechniquesMixin:
    """Methods over ``self.infer`` and ``self.optimize`` (provided by Client)."""

    def _optimized(self, technique: str, inputs: Mapping[str, np.ndarray], progress: Progress | None,
                   timeout: float | None, params: dict) -> Optimized:
        losses: list[float] = []

        def seen(step: int, loss: float, preview: np.ndarray | None):
            losses.append(loss)
            return progress(step, loss, preview) if progress is not None else None

        out = self.optimize(technique, inputs, progress=seen, timeout=timeout, **params)
        extra = {k: _scalar(v) for k, v in out.items() if k not in ("image", "steps", "step", "loss")}
        return Optimized(out["image"], int(out["steps"][0]), losses, extra)

    def deepdream(self, image, layer: str = "relu3_3", *, progress: Progress | None = None,
                  timeout: float | None = None, **params) -> Optimized:
        """Amplify what a VGG16 layer sees (octaves, jitter, steps per octave)."""
        return self._optimized("deepdream", {"image": to_array(image)}, progress, timeout, {"layer": layer, **params})

    def invert(self, image, layer: str = "relu2_2", *, progress: Progress | None = None,
               timeout: float | None = None, **params) -> Optimized:
        """Reconstruct the image from one VGG16 layer's features (total-variation regularized)."""
        return self._optimized("feature_inversion", {"image": to_array(image)}, progress, timeout,
                               {"layer": layer, **params})

    def texture(self, texture, *, progress: Progress | None = None, timeout: float | None = None,
                **params) -> Optimized:
        """Synthesize a new texture with the Gram matrices of ``texture``."""
        return self._optimized("texture_synthesis", {"image": to_array(texture)}, progress, timeout, params)

    def gatys(self, content, styles: Sequence, weights: Sequence[float] | None = None, *, style_size: int = 384,
              progress: Progress | None = None, timeout: float | None = None, **params) -> Optimized:
        """Optimization-based style transfer with one or more styles blended by ``weights``."""
        inputs = {"content": to_array(content), "style": common_size(styles, style_size)}
        if weights is not None:
            inputs["style_weights"] = np.asarray(weights, np.float32)
        return self._optimized("gatys", inputs, progress, timeout, {"style_size": style_size, **params})

    def fool(self, image, target: int, *, progress: Progress | None = None, timeout: float | None = None,
             **params) -> Optimized:
        """The smallest L-inf perturbation that makes the classifier say ``target`` (extra: label, linf, l2)."""
        return self._optimized("fooling", {"image": to_array(image)}, progress, timeout, {"target": target, **params})

    def visualize_class(self, class_index: int, *, progress: Progress | None = None, timeout: float | None = None,
                        **params) -> Optimized:
        """Gradient ascent on a class score from noise, with L2, blur and jitter regularizers."""
        return self._optimized("class_visualization", {"class_index": np.array([class_index], np.int32)},
                               progress, timeout, params)

    def neighbours(self, image, k: int = 5, timeout: float | None = None) -> GalleryView:
        """The k gallery images nearest in the classifier's penultimate-feature space."""
        out = self.infer("knn", {"image": to_array(image)}, ["picture", "names", "distances"],
                         parameters={"k": k}, timeout=timeout)
        return GalleryView(out["picture"], _text(out["names"]), out["distances"])

    def embedding(self, method: str = "tsne", timeout: float | None = None, **params) -> GalleryView:
        """PCA or t-SNE coordinates of every gallery image, and the scatter of thumbnails."""
        out = self.infer("embedding", {"method": np.array([method.encode()], np.object_)},
                         ["picture", "names", "coordinates"], parameters=params or None, timeout=timeout)
        return GalleryView(out["picture"], _text(out["names"]), out["coordinates"])

    def patches(self, layer: str, channel: int, k: int = 9, timeout: float | None = None) -> GalleryView:
        """The gallery regions that excite one VGG16 unit most, cropped to its receptive field."""
        out = self.infer("max_activating_patches", {"layer": np.array([layer.encode()], np.object_),
                                                    "channel": np.array([channel], np.int32)},
                         ["picture", "names", "scores", "patches"], parameters={"k": k}, timeout=timeout)
        return GalleryView(out["picture"], _text(out["names"]), out["scores"], out["patches"])

    def filters(self, network: str = "classifier", scale: int = 8, timeout: float | None = None) -> np.ndarray:
        """The first convolution's kernels of ``classifier`` or ``vgg16`` as an image grid."""
        out = self.infer("filters", {"network": np.array([network.encode()], np.object_)}, ["picture"],
                         parameters={"scale": scale}, timeout=timeout)
        return out["picture"]
