"""Activation-based techniques served as models: k nearest neighbours, PCA / t-SNE maps of the gallery,
maximally activating patches and first-layer filters. They read activations only (no gradients)."""

from __future__ import annotations

import threading
from functools import lru_cache

import numpy as np
from PIL import Image
from tritonclient.grpc import model_config_pb2 as mc

from ..errors import InvalidArgument
from . import gallery as gal
from .backend import Param, SidecarBackend, describe
from .iterative import LAYERS
from .networks import load_classifier, loss_network


def _text(inputs: dict[str, np.ndarray], name: str, choices: tuple[str, ...]) -> str:
    raw = inputs[name].reshape(-1)
    value = raw[0].decode() if raw.size and isinstance(raw[0], bytes) else (str(raw[0]) if raw.size else "")
    if value not in choices:
        raise InvalidArgument(f"input '{name}' must be one of {list(choices)}, got {value!r}")
    return value


def _strings(values) -> np.ndarray:
    return np.array([str(v).encode() for v in values], dtype=np.object_)


class GalleryBackend(SidecarBackend):
    """A technique over the gallery: the config is built from the subclass's NAME, INPUTS, OUTPUTS, PARAMS."""

    NAME = ""
    DESCRIPTION = ""
    INPUTS: tuple[tuple[str, int, list[int]], ...] = ()
    OUTPUTS: tuple[tuple[str, int, list[int]], ...] = ()
    PARAMS: tuple[Param, ...] = ()

    def __init__(self) -> None:
        cfg = mc.ModelConfig(name=self.NAME, backend="stylecast_sidecar", max_batch_size=0)
        for name, dtype, dims in self.INPUTS:
            cfg.input.add(name=name, data_type=dtype, dims=dims)
        for name, dtype, dims in self.OUTPUTS:
            cfg.output.add(name=name, data_type=dtype, dims=dims)
        super().__init__(describe(cfg, self.DESCRIPTION, self.PARAMS), self.PARAMS)

    def load(self) -> None:
        self.model = load_classifier()
        self.gallery = gal.default_gallery()

    def infer(self, inputs: dict[str, np.ndarray], outputs: list[str], parameters: dict,
              emit=None) -> dict[str, np.ndarray]:
        result = self.run(inputs, parameters)
        return {k: result[k] for k in outputs}

    def run(self, inputs: dict[str, np.ndarray], parameters: dict) -> dict[str, np.ndarray]:
        raise NotImplementedError


IMAGE = ("image", mc.TYPE_UINT8, [-1, -1, 3])
PICTURE = ("picture", mc.TYPE_UINT8, [-1, -1, 3])
NAMES = ("names", mc.TYPE_STRING, [-1])


class NeighboursBackend(GalleryBackend):
    NAME = "knn"
    DESCRIPTION = "k nearest gallery images in the classifier's penultimate-feature space (cosine distance)"
    INPUTS = (IMAGE,)
    OUTPUTS = (("indices", mc.TYPE_INT32, [-1]), ("distances", mc.TYPE_FP32, [-1]), NAMES, PICTURE)
    PARAMS = (Param("k", int, 5, 1, 50, "neighbours to return"),)

    def run(self, inputs, parameters):
        image = inputs["image"]
        query = gal.penultimate(self.model, gal._prepare(Image.fromarray(image)))[0].numpy()
        idx, dist = self.gallery.knn(query, min(parameters["k"], len(self.gallery.names)))
        return {"indices": idx.astype(np.int32), "distances": dist.astype(np.float32),
                "names": _strings(self.gallery.names[i] for i in idx),
                "picture": gal.neighbours_picture(image, self.gallery, idx)}


class EmbeddingBackend(GalleryBackend):
    NAME = "embedding"
    DESCRIPTION = "PCA or t-SNE (scikit-learn) of the gallery's penultimate features, as coordinates in [0, 1] " \
                  "and as a picture with thumbnails at their positions"
    INPUTS = (("method", mc.TYPE_STRING, [1]),)
    OUTPUTS = (("coordinates", mc.TYPE_FP32, [-1, 2]), NAMES, PICTURE)
    PARAMS = (Param("size", int, 1024, 256, 4096, "side of the picture"),
              Param("seed", int, 0, 0, 2**31 - 1, "random seed (t-SNE)"))

    def load(self) -> None:
        super().load()
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, int], np.ndarray] = {}

    def run(self, inputs, parameters):
        method = _text(inputs, "method", ("pca", "tsne"))
        key = (method, parameters["seed"])
        with self._lock:  # t-SNE takes seconds: compute once per method and seed
            if key not in self._cache:
                self._cache[key] = self.gallery.embed(method, parameters["seed"])
        xy = self._cache[key]
        return {"coordinates": xy, "names": _strings(self.gallery.names),
                "picture": self.gallery.scatter(xy, parameters["size"])}


class PatchesBackend(GalleryBackend):
    NAME = "max_activating_patches"
    DESCRIPTION = "the gallery regions that excite one VGG16 unit most, cropped to its receptive field"
    INPUTS = (("layer", mc.TYPE_STRING, [1]), ("channel", mc.TYPE_INT32, [1]))
    OUTPUTS = (("patches", mc.TYPE_UINT8, [-1, -1, -1, 3]), ("scores", mc.TYPE_FP32, [-1]), NAMES, PICTURE)
    PARAMS = (Param("k", int, 9, 1, 64, "patches to return"),)

    def load(self) -> None:
        super().load()
        self.vgg = loss_network(LAYERS)
        self._maxima = lru_cache(maxsize=len(LAYERS))(
            lambda layer: gal.cached_unit_maxima(self.vgg, self.gallery, layer))

    def run(self, inputs, parameters):
        layer = _text(inputs, "layer", LAYERS)
        channels = _channels(layer)
        channel = int(inputs["channel"].reshape(-1)[0])
        if not 0 <= channel < channels:
            raise InvalidArgument(f"input 'channel' must be in [0, {channels - 1}] for {layer}, got {channel}")
        k = min(parameters["k"], len(self.gallery.paths))
        patches, scores, idx = gal.max_activating_patches(self.vgg, self.gallery.paths, layer, channel, k,
                                                          maxima=self._maxima(layer))
        side = gal.receptive_field(layer)[0]
        padded = np.full((len(patches), side, side, 3), 255, np.uint8)
        for n, p in enumerate(patches):
            padded[n, :p.shape[0], :p.shape[1]] = p
        return {"patches": padded, "scores": np.array(scores, np.float32),
                "names": _strings(self.gallery.names[i] for i in idx), "picture": gal.tile(patches, 96)}


def _channels(layer: str) -> int:
    block = int(layer[4])
    return {1: 64, 2: 128, 3: 256, 4: 512}[block]


class FiltersBackend(GalleryBackend):
    NAME = "filters"
    DESCRIPTION = "the first convolution's kernels as an image grid (each kernel scaled to 0..255)"
    INPUTS = (("network", mc.TYPE_STRING, [1]),)
    OUTPUTS = (PICTURE, ("count", mc.TYPE_INT32, [1]))
    PARAMS = (Param("scale", int, 8, 1, 32, "pixels per kernel element"),)

    def load(self) -> None:
        self.model = load_classifier()

    def run(self, inputs, parameters):
        which = _text(inputs, "network", ("classifier", "vgg16"))
        net = self.model.net if which == "classifier" else loss_network().body
        return {"picture": gal.first_layer_filters(net, parameters["scale"]),
                "count": np.array([gal.first_conv(net).out_channels], np.int32)}


BACKENDS = (NeighboursBackend, EmbeddingBackend, PatchesBackend, FiltersBackend)
