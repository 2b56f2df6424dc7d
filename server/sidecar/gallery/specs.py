"""Activation-based techniques served as models: k nearest neighbours, PCA / t-SNE maps of the gallery,
maximally activating patches and first-layer filters. They read activations only (no gradients).
One spec each, at the end."""

from __future__ import annotations

import atexit
import logging
import threading

import numpy as np
from PIL import Image
from tritonclient.grpc import model_config_pb2 as mc

from ...errors import InvalidArgument
from ..networks import cached_loss_network, load_classifier
from ..neurons import LAYERS
from ..spec import Param, Spec, Tensor, image, scalar, text
from . import index

log = logging.getLogger(__name__)


def _text(inputs: dict[str, np.ndarray], name: str, choices: tuple[str, ...]) -> str:
    raw = inputs[name].reshape(-1)
    value = raw[0].decode() if raw.size and isinstance(raw[0], bytes) else (str(raw[0]) if raw.size else "")
    if value not in choices:
        raise InvalidArgument(f"input '{name}' must be one of {list(choices)}, got {value!r}")
    return value


def _strings(values) -> np.ndarray:
    return np.array([str(v).encode() for v in values], dtype=np.object_)


PICTURE = image("picture")
NAMES = Tensor("names", mc.TYPE_STRING, (-1,))


def _warm_gallery() -> None:
    load_classifier()
    index.default_gallery()


def _run_knn(inputs: dict, p: dict, progress=None) -> dict:
    model, gallery, query_image = load_classifier(), index.default_gallery(), inputs["image"]
    query = index.penultimate(model, index._prepare(Image.fromarray(query_image)))[0].numpy()
    idx, dist = gallery.knn(query, min(p["k"], len(gallery.names)))
    return {"indices": idx.astype(np.int32), "distances": dist.astype(np.float32),
            "names": _strings(gallery.names[i] for i in idx),
            "picture": index.neighbours_picture(query_image, gallery, idx)}


_EMBED_LOCK = threading.Lock()
_EMBEDDINGS: dict[tuple[index.Gallery, str, int], np.ndarray] = {}


def _run_embedding(inputs: dict, p: dict, progress=None) -> dict:
    method, gallery = _text(inputs, "method", ("pca", "tsne")), index.default_gallery()
    key = (gallery, method, p["seed"])
    with _EMBED_LOCK:  # t-SNE takes seconds: compute once per gallery, method and seed
        if key not in _EMBEDDINGS:
            _EMBEDDINGS[key] = gallery.embed(method, p["seed"])
    xy = _EMBEDDINGS[key]
    return {"coordinates": xy, "names": _strings(gallery.names), "picture": gallery.scatter(xy, p["size"])}


def _vgg():
    return cached_loss_network("vgg16", LAYERS)


_SCAN_LOCK = threading.Lock()
_SCANS: dict[index.Gallery, dict[str, index.UnitMaxima]] = {}
# The background scan stops when the process exits: a daemon thread killed inside a torch call aborts the
# interpreter ("terminate called without an active exception").
_STOP = threading.Event()


def _scan(gallery: index.Gallery, stop: threading.Event | None = None) -> dict[str, index.UnitMaxima]:
    """Every layer's unit maxima of ``gallery``, from one scan (or the disk cache); a call during the scan
    that the model's load started waits for it rather than scanning again."""
    with _SCAN_LOCK:
        if gallery not in _SCANS:
            _SCANS[gallery] = index.cached_unit_maxima(_vgg(), gallery, LAYERS, stop=stop)
        return _SCANS[gallery]


def _background_scan(gallery: index.Gallery) -> None:
    try:
        _scan(gallery, _STOP)
    except index.ScanStopped as e:
        log.info("%s (the process exits)", e)


def _stop_scan(thread: threading.Thread) -> None:
    _STOP.set()
    thread.join(timeout=60)


def _warm_patches() -> None:
    """The gallery's features now; its scan of every layer in the background, so the server is ready for
    the other models at once and the first max_activating_patches call waits at most for the rest of it."""
    _warm_gallery()
    thread = threading.Thread(target=_background_scan, args=(index.default_gallery(),), name="gallery-scan",
                              daemon=True)
    thread.start()
    atexit.register(_stop_scan, thread)


def _run_patches(inputs: dict, p: dict, progress=None) -> dict:
    layer = _text(inputs, "layer", LAYERS)
    channels = _channels(layer)
    channel = int(inputs["channel"].reshape(-1)[0])
    if not 0 <= channel < channels:
        raise InvalidArgument(f"input 'channel' must be in [0, {channels - 1}] for {layer}, got {channel}")
    gallery = index.default_gallery()
    k = min(p["k"], len(gallery.paths))
    patches, scores, idx = index.max_activating_patches(_vgg(), gallery.paths, layer, channel, k,
                                                      maxima=_scan(gallery)[layer])
    side = index.receptive_field(layer)[0]
    padded = np.full((len(patches), side, side, 3), 255, np.uint8)
    for n, patch in enumerate(patches):
        padded[n, :patch.shape[0], :patch.shape[1]] = patch
    return {"patches": padded, "scores": np.array(scores, np.float32),
            "names": _strings(gallery.names[i] for i in idx), "picture": index.tile(patches, 96)}


def _channels(layer: str) -> int:
    block = int(layer[4])
    return {1: 64, 2: 128, 3: 256, 4: 512}[block]


def _run_filters(inputs: dict, p: dict, progress=None) -> dict:
    which = _text(inputs, "network", ("classifier", "vgg16"))
    net = load_classifier().net if which == "classifier" else cached_loss_network().body
    return {"picture": index.first_layer_filters(net, p["scale"]),
            "count": np.array([index.first_conv(net).out_channels], np.int32)}


SPECS = (
    Spec("knn", "k nearest gallery images in the classifier's penultimate-feature space (cosine distance)",
         (image(),), (Tensor("indices", mc.TYPE_INT32, (-1,)), Tensor("distances", mc.TYPE_FP32, (-1,)), NAMES,
                      PICTURE),
         (Param("k", int, 5, 1, 50, "neighbours to return"),), _run_knn, load=_warm_gallery, family="gallery"),
    Spec("embedding", "PCA or t-SNE (scikit-learn) of the gallery's penultimate features, as coordinates in "
         "[0, 1] and as a picture with thumbnails at their positions",
         (text("method"),), (Tensor("coordinates", mc.TYPE_FP32, (-1, 2)), NAMES, PICTURE),
         (Param("size", int, 1024, 256, 4096, "side of the picture"),
          Param("seed", int, 0, 0, 2**31 - 1, "random seed (t-SNE)")), _run_embedding, load=_warm_gallery,
         family="gallery"),
    Spec("max_activating_patches", "the gallery regions that excite one VGG16 unit most, cropped to its "
         "receptive field", (text("layer"), scalar("channel")),
         (Tensor("patches", mc.TYPE_UINT8, (-1, -1, -1, 3)), Tensor("scores", mc.TYPE_FP32, (-1,)), NAMES, PICTURE),
         (Param("k", int, 9, 1, 64, "patches to return"),), _run_patches, load=_warm_patches, family="gallery"),
    Spec("filters", "the first convolution's kernels as an image grid (each kernel scaled to 0..255)",
         (text("network"),), (PICTURE, scalar("count")),
         (Param("scale", int, 8, 1, 32, "pixels per kernel element"),), _run_filters, load=load_classifier,
         family="gallery"),
)
