"""Typed methods for the sidecar's techniques, shared by ``Client`` and ``AsyncClient``.

Each method only builds a :class:`Call` (what to send, how to read the answer: no I/O) and hands it to
the client's ``_perform``, which the sync client runs at once and the async client returns as an
awaitable. So one definition serves both clients, and ``await async_client.deepdream(...)`` takes the
same arguments as ``client.deepdream(...)``. Parameters left as None take the server's defaults (each
technique's ModelConfig lists them, with bounds: see :func:`technique_params`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from stylecast.contract import TECHNIQUE_PARAM_PREFIX, read_param

from .imaging import to_array

Progress = Callable[[int, float, "np.ndarray | None"], "bool | None"]


@dataclass(frozen=True)
class Explanation:
    """What an attribution technique returns: the map (same H x W as the image), the explained class and
    a heat-map overlay to look at."""

    map: np.ndarray
    overlay: np.ndarray
    label: str
    class_index: int
    probability: float


@dataclass(frozen=True)
class Segmentation:
    """The object of the explained class: ``mask`` (uint8 0/1, the image's H x W), an overlay to look at, and
    the class that seeded it."""

    mask: np.ndarray
    overlay: np.ndarray
    label: str
    class_index: int
    probability: float


@dataclass(frozen=True)
class NeuronExplanation:
    """Saliency or guided backprop of one neuron: the map and overlay, which neuron (layer, channel and its
    position in the layer's grid), its activation there, and its receptive field in the image's pixels
    (top, left, bottom, right)."""

    map: np.ndarray
    overlay: np.ndarray
    layer: str
    channel: int
    y: int
    x: int
    activation: float
    box: tuple[int, int, int, int]


@dataclass(frozen=True)
class Optimized:
    """The result of an iterative technique: the image, the steps run, every streamed loss, and the
    technique's other outputs (for fooling: label, original, original_label, perturbation, linf, l2)."""

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


@dataclass(frozen=True)
class LearnedStyle:
    """What ``learn_style`` returns: the model's new version and its styles (the new one last), a preview of
    the new style on a training photo, the steps run and every streamed loss."""

    model: str
    version: int
    styles: list[str]
    preview: np.ndarray
    steps: int
    losses: list[float] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.styles[-1]


@dataclass(frozen=True)
class Call:
    """One technique request without I/O: the model, its inputs, the outputs wanted (None: all), the
    request parameters, and ``parse(outputs, losses)`` to build the typed answer. ``streamed`` calls run
    over ModelStreamInfer with ``progress`` seeing each step."""

    model: str
    inputs: dict[str, np.ndarray]
    outputs: tuple[str, ...] | None
    params: dict[str, object]
    parse: Callable[[dict[str, np.ndarray], list[float]], object]
    streamed: bool = False
    progress: Progress | None = None
    timeout: float | None = None
    changes: str | None = None  # a model whose config the call changes: the client forgets its cached one


@dataclass(frozen=True)
class ParamInfo:
    """One technique parameter as its ModelConfig lists it (``param.<name>``)."""

    name: str
    kind: type
    default: object
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()
    help: str = ""

    def coerce(self, text: str) -> object:
        """A command-line value as this parameter's type (the server checks bounds and choices)."""
        if self.kind is int:
            return int(text)
        return float(text) if self.kind is float else str(text)


def technique_params(cfg) -> dict[str, ParamInfo]:
    """The parameters a technique's ModelConfig lists, e.g. ``int,default=5,min=1,max=50: help``."""
    out = {}
    for key, value in cfg.parameters.items():
        if not key.startswith(TECHNIQUE_PARAM_PREFIX):
            continue
        name = key[len(TECHNIQUE_PARAM_PREFIX):]
        out[name] = ParamInfo(name, **read_param(value.string_value))
    return out


def _text(values: np.ndarray) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values.reshape(-1)]


def _scalar(v: np.ndarray) -> object:
    x = v.reshape(-1)[0]
    return x.decode() if isinstance(x, bytes) else x.item()


def _string(value: str) -> np.ndarray:
    return np.array([value.encode()], np.object_)


def _given(**params) -> dict[str, object]:
    """The parameters the caller set (None: the server's default)."""
    return {k: v for k, v in params.items() if v is not None}


def common_size(images: Sequence, side: int) -> np.ndarray:
    """Style images as one batch: each resized to ``side`` x ``side`` (Gram statistics barely depend on
    the aspect ratio)."""
    return np.stack([np.asarray(Image.fromarray(to_array(im)).resize((side, side), Image.Resampling.LANCZOS))
                     for im in images])


def parse_explanation(out: dict[str, np.ndarray], losses: list[float]) -> Explanation:
    return Explanation(out["map"], out["overlay"], _text(out["label"])[0], int(out["class_index"][0]),
                       float(out["probability"][0]))


def parse_optimized(out: dict[str, np.ndarray], losses: list[float]) -> Optimized:
    extra = {k: _scalar(v) for k, v in out.items() if k not in ("image", "steps", "step", "loss")}
    return Optimized(out["image"], int(out["steps"][0]), list(losses), extra)


def gallery_view(values: str, patches: bool = False):
    def parse(out: dict[str, np.ndarray], losses: list[float]) -> GalleryView:
        return GalleryView(out["picture"], _text(out["names"]), out[values], out["patches"] if patches else None)
    return parse


def recording(losses: list[float], progress: Progress | None) -> Progress:
    """A progress callback that keeps every loss, then calls the caller's."""
    def seen(step: int, loss: float, preview: np.ndarray | None):
        losses.append(loss)
        return progress(step, loss, preview) if progress is not None else None
    return seen


ATTRIBUTION_OUTPUTS = ("map", "overlay", "label", "class_index", "probability")


class TechniquesMixin:
    """The technique methods; ``_perform(call)`` is the client's (sync: the answer; async: an awaitable)."""

    def _perform(self, call: Call):
        raise NotImplementedError

    def _optimized(self, technique: str, inputs: Mapping[str, np.ndarray], progress: Progress | None,
                   timeout: float | None, params: dict):
        return self._perform(Call(technique, dict(inputs), None, params, parse_optimized, True, progress, timeout))

    def explain(self, technique: str, image, target: int | None = None, timeout: float | None = None,
                **params) -> Explanation:
        """Run an attribution technique (``saliency``, ``guided_backprop``, ``gradcam``, ``occlusion``) on one
        image; ``target`` is the class to explain (default: the predicted one); ``params`` are the
        technique's knobs (see its ModelConfig), e.g. ``smooth_samples=8``."""
        return self._perform(Call(technique, {"image": to_array(image)}, ATTRIBUTION_OUTPUTS,
                                  _given(target=target, **params), parse_explanation, timeout=timeout))

    def segment(self, image, target: int | None = None, *, seed_map: str | None = None, timeout: float | None = None,
                **params) -> Segmentation:
        """Unsupervised segmentation: a class map (``seed_map``: gradcam, saliency or guided_backprop) of
        ``target`` (default: the predicted class) seeds GrabCut."""
        def parse(out: dict[str, np.ndarray], losses: list[float]) -> Segmentation:
            return Segmentation(out["mask"], out["overlay"], _text(out["label"])[0], int(out["class_index"][0]),
                                float(out["probability"][0]))

        return self._perform(Call("segmentation", {"image": to_array(image)},
                                  ("mask", "overlay", "label", "class_index", "probability"),
                                  _given(target=target, seed_map=seed_map, **params), parse, timeout=timeout))

    def explain_neuron(self, image, layer: str, channel: int, *, y: int | None = None, x: int | None = None,
                       technique: str = "guided_backprop", timeout: float | None = None,
                       **params) -> NeuronExplanation:
        """Which pixels drive one neuron: ``technique`` (``guided_backprop`` or ``saliency``) of the activation of
        ``channel`` in ``layer`` (a VGG16 ReLU as max_activating_patches names it, a classifier block such as
        ``block4``, or ``class``) at ``(y, x)`` of the layer's grid, by default where it is most active."""
        def parse(out: dict[str, np.ndarray], losses: list[float]) -> NeuronExplanation:
            c, ny, nx = (int(v) for v in out["neuron"].reshape(-1))
            return NeuronExplanation(out["map"], out["overlay"], layer, c, ny, nx, float(out["activation"][0]),
                                     tuple(int(v) for v in out["box"].reshape(-1)))

        return self._perform(Call(technique, {"image": to_array(image)}, ("map", "overlay", "neuron", "activation",
                                                                          "box"),
                                  _given(layer=layer, channel=channel, y=y, x=x, **params), parse, timeout=timeout))

    def deepdream(self, image, layer: str | None = None, *, progress: Progress | None = None,
                  timeout: float | None = None, **params) -> Optimized:
        """Amplify what a VGG16 layer sees (octaves, jitter, steps per octave)."""
        return self._optimized("deepdream", {"image": to_array(image)}, progress, timeout,
                               _given(layer=layer, **params))

    def invert(self, image, layer: str | None = None, *, progress: Progress | None = None,
               timeout: float | None = None, **params) -> Optimized:
        """Reconstruct the image from one layer's features (total-variation regularized)."""
        return self._optimized("feature_inversion", {"image": to_array(image)}, progress, timeout,
                               _given(layer=layer, **params))

    def texture(self, texture, *, progress: Progress | None = None, timeout: float | None = None,
                **params) -> Optimized:
        """Synthesize a new texture with the Gram matrices of ``texture``."""
        return self._optimized("texture_synthesis", {"image": to_array(texture)}, progress, timeout, _given(**params))

    def gatys(self, content, styles: Sequence, weights: Sequence[float] | None = None, *, style_size: int = 384,
              progress: Progress | None = None, timeout: float | None = None, **params) -> Optimized:
        """Optimization-based style transfer with one or more styles blended by ``weights``."""
        inputs = {"content": to_array(content), "style": common_size(styles, style_size)}
        if weights is not None:
            inputs["style_weights"] = np.asarray(weights, np.float32)
        return self._optimized("gatys", inputs, progress, timeout, _given(style_size=style_size, **params))

    def fool(self, image, target: int | None = None, *, progress: Progress | None = None,
             timeout: float | None = None, **params) -> Optimized:
        """The smallest L-inf perturbation that makes the classifier say ``target`` (extra: label, linf, l2, and
        the before / after: original, original_label, perturbation: the change x10 around grey 128)."""
        return self._optimized("fooling", {"image": to_array(image)}, progress, timeout,
                               _given(target=target, **params))

    def visualize_class(self, class_index: int | None = None, *, progress: Progress | None = None,
                        timeout: float | None = None, **params) -> Optimized:
        """Gradient ascent on a class score from noise, with L2, blur and jitter regularizers (default class:
        the server's, 130 flamingo)."""
        inputs = {} if class_index is None else {"class_index": np.array([class_index], np.int32)}
        return self._optimized("class_visualization", inputs, progress, timeout, _given(**params))

    def learn_style(self, painting, model: str, name: str, steps: int | None = None, *,
                    progress: Progress | None = None, timeout: float | None = None, **params) -> LearnedStyle:
        """Teach ``model`` (a multi-style model of the server) the style of ``painting`` under ``name``; the server
        then serves the model's next version, the new style last. Needs a server started with
        ``--allow-learning``; takes minutes on a CPU (``steps``, ``image_size`` and ``batch_size`` trade time for
        quality). A cancel or passed deadline stops it and leaves the repository as it was."""
        def parse(out: dict[str, np.ndarray], losses: list[float]) -> LearnedStyle:
            return LearnedStyle(model, int(out["version"][0]), _text(out["styles"])[0].split(","), out["image"],
                                int(out["steps"][0]), list(losses))

        return self._perform(Call("learn_style", {"painting": to_array(painting)}, None,
                                  _given(model=model, name=name, steps=steps, **params), parse, True, progress,
                                  timeout, changes=model))

    def visualize_feature(self, layer: str, channel: int, *, image=None, progress: Progress | None = None,
                          timeout: float | None = None, **params) -> Optimized:
        """Gradient ascent on one channel of ``layer`` (a VGG16 ReLU as ``patches`` names it, a classifier block, or
        ``class``) from noise (or from ``image``); ``extra["activation"]`` is the channel's maximum over positions
        on the result, comparable with ``patches(layer, channel).values``."""
        inputs = {} if image is None else {"image": to_array(image)}
        return self._optimized("feature_visualization", inputs, progress, timeout,
                               _given(layer=layer, channel=channel, **params))

    def neighbours(self, image, k: int | None = None, timeout: float | None = None) -> GalleryView:
        """The k gallery images nearest in the classifier's penultimate-feature space."""
        return self._perform(Call("knn", {"image": to_array(image)}, ("picture", "names", "distances"), _given(k=k),
                                  gallery_view("distances"), timeout=timeout))

    def embedding(self, method: str = "tsne", timeout: float | None = None, **params) -> GalleryView:
        """PCA or t-SNE coordinates of every gallery image, and the scatter of thumbnails."""
        return self._perform(Call("embedding", {"method": _string(method)}, ("picture", "names", "coordinates"),
                                  _given(**params), gallery_view("coordinates"), timeout=timeout))

    def patches(self, layer: str, channel: int, k: int | None = None, timeout: float | None = None) -> GalleryView:
        """The gallery regions that excite one VGG16 unit most, cropped to its receptive field."""
        inputs = {"layer": _string(layer), "channel": np.array([channel], np.int32)}
        return self._perform(Call("max_activating_patches", inputs, ("picture", "names", "scores", "patches"),
                                  _given(k=k), gallery_view("scores", patches=True), timeout=timeout))

    def filters(self, network: str = "classifier", scale: int | None = None, timeout: float | None = None):
        """The first convolution's kernels of ``classifier`` or ``vgg16`` as an image grid."""
        return self._perform(Call("filters", {"network": _string(network)}, ("picture",), _given(scale=scale),
                                  lambda out, losses: out["picture"], timeout=timeout))
