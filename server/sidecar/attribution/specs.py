"""Attribution techniques: a map over the image of how much each pixel mattered to one class score (or, for
saliency and guided backprop, to one neuron of an intermediate layer), with the overlay, the explained class
and its probability. One spec each."""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F
from tritonclient.grpc import model_config_pb2 as mc

from ...errors import InvalidArgument
from ...scheduler import check_stop
from ..imaging import heat_overlay
from ..networks import Classifier, load_classifier
from ..neurons import LAYERS, NEURON_LAYERS, NeuronScores, index, locate, network
from ..spec import Param, Run, Spec, Tensor, choice, image, scalar
from .methods import GradCAM, GuidedBackprop, Occlusion, Saliency, SmoothGrad, occlusion_windows

INPUT_SIZE = 224
MAX_PIXELS = 4096 * 4096  # attribution maps come back at the input's size: 7 bytes a pixel
_BYTES_PER_PIXEL = {"map": 4, "overlay": 3, "mask": 1}
MAX_OCCLUSION_PASSES = 1024  # about 45 s on two CPU cores; each window is one classifier forward pass

TARGET = Param("target", int, -1, -1, 999, "ImageNet class to explain; -1 = the predicted class")
SMOOTH = (Param("smooth_samples", int, 0, 0, 64, "SmoothGrad: noisy copies to average (0 = off)"),
          Param("smooth_sigma", float, 0.1, 0.0, 1.0, "SmoothGrad noise, as a fraction of the pixel range"),
          Param("seed", int, 0, 0, 2**31 - 1, "random seed"))
OUTPUTS = (Tensor("map", mc.TYPE_FP32, (-1, -1)), image("overlay"), Tensor("label", mc.TYPE_STRING, (1,)),
           scalar("class_index"), scalar("probability", mc.TYPE_FP32))
# A neuron instead of a class (saliency, guided backprop): the lecture's "gradient of a neuron's value".
NEURON = (choice("layer", "class", ("class", *NEURON_LAYERS[1:]),
                 "explain a neuron of this layer instead of a class ('class': the target class); the VGG16 names "
                 "are max_activating_patches' layers"),
          Param("channel", int, 0, 0, 2047, "the neuron's channel in 'layer'"),
          Param("y", int, -1, -1, 1023, "the neuron's row in the layer's grid at 224 px (-1: its most active one)"),
          Param("x", int, -1, -1, 1023, "the neuron's column (-1: its most active one)"))
NEURON_OUTPUTS = (Tensor("neuron", mc.TYPE_INT32, (3,)), scalar("activation", mc.TYPE_FP32),
                  Tensor("box", mc.TYPE_INT32, (4,)))


def answer_bytes(inputs: dict[str, np.ndarray], outputs: list[str]) -> int | None:
    """The map and overlay come back at the input's size."""
    if inputs.get("image") is None or inputs["image"].ndim != 3:
        return None  # validation of the request says what is wrong
    h, w = inputs["image"].shape[:2]
    if h * w > MAX_PIXELS:
        raise InvalidArgument(f"input 'image' has {h}x{w} pixels, more than {MAX_PIXELS} (4096x4096): "
                              "send a smaller image")
    return h * w * sum(_BYTES_PER_PIXEL.get(o, 0) for o in outputs) + 1024


def attribution_run(method) -> Run:
    """The run function of an attribution: ``method(model, params)`` builds the attribution of ``model``'s
    scores (the classifier's logits, or a layer's neurons)."""

    def run(inputs: dict[str, np.ndarray], p: dict, progress=None) -> dict[str, np.ndarray]:
        model = load_classifier()
        picture = inputs["image"]
        h, w = picture.shape[:2]
        x = torch.from_numpy(np.array(picture)).permute(2, 0, 1)[None].float()
        x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False, antialias=True)
        with torch.no_grad():
            probs = model(x).softmax(1)[0]
        predicted = int(p["target"]) if p["target"] >= 0 else int(probs.argmax())
        extra: dict[str, np.ndarray] = {}
        if p.get("layer", "class") == "class":
            attr = method(model, p).attribute(x, torch.tensor([predicted]))
        else:
            attr, extra = _neuron_attribution(method, p, x, (h, w))
        amap = F.interpolate(attr[None].float(), size=(h, w), mode="bilinear", align_corners=False)[0, 0]
        amap = amap.numpy().astype(np.float32)
        label = extra.pop("text", None) or model.classes[predicted]
        return {"map": amap, "overlay": heat_overlay(picture, amap),
                "label": np.array([label.encode()], dtype=np.object_),
                "class_index": np.array([predicted], np.int32),
                "probability": np.array([float(probs[predicted])], np.float32), **extra}

    return run


def _neuron_attribution(method, p: dict, x: torch.Tensor, size: tuple[int, int]) -> tuple[torch.Tensor, dict]:
    """The attribution of one neuron; its position, activation and receptive-field box (image pixels)."""
    net = network(p["layer"])
    y, x_, value, shape = locate(net, x, p["channel"], p["y"], p["x"])
    attr = method(NeuronScores(net), p).attribute(x, torch.tensor([index(p["channel"], y, x_, shape)]))
    box = _box(p["layer"], y, x_, shape, size)
    text = f"{p['layer']} channel {p['channel']} at ({y}, {x_}), activation {value:.3g}"
    return attr, {"neuron": np.array([p["channel"], y, x_], np.int32), "activation": np.array([value], np.float32),
                  "box": np.array(box, np.int32), "text": text}


def _box(layer: str, y: int, x: int, shape: tuple, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """(top, left, bottom, right) of the neuron's receptive field in the image's pixels. For VGG16 layers it
    is exact (convolutions and pools); elsewhere the layer's grid cell (the field is larger)."""
    from ..gallery.index import receptive_field

    _, gh, gw = shape
    if layer in LAYERS:
        field, jump = receptive_field(layer)
        cy, cx = y * jump + jump // 2, x * jump + jump // 2
        box = (cy - field // 2, cx - field // 2, cy + field // 2 + 1, cx + field // 2 + 1)
    else:
        box = (y * INPUT_SIZE // gh, x * INPUT_SIZE // gw, (y + 1) * INPUT_SIZE // gh, (x + 1) * INPUT_SIZE // gw)
    sy, sx = size[0] / INPUT_SIZE, size[1] / INPUT_SIZE
    t, l, b, r = box
    return (max(0, round(t * sy)), max(0, round(l * sx)), min(size[0], round(b * sy)), min(size[1], round(r * sx)))


def smoothed(cls):
    def build(model: Classifier, p: dict):
        t = cls(model)
        if p["smooth_samples"] > 0:
            return SmoothGrad(t, p["smooth_samples"], p["smooth_sigma"], p["seed"], check=check_stop)
        return t
    return build


def occlusion_budget(p: dict) -> None:
    n = len(occlusion_windows(INPUT_SIZE, INPUT_SIZE, p["patch"], p["stride"]))
    if n > MAX_OCCLUSION_PASSES:
        raise InvalidArgument(
            f"occlusion with patch {p['patch']} and stride {p['stride']} needs {n} forward passes, more than the "
            f"{MAX_OCCLUSION_PASSES} allowed: raise 'stride' (or 'patch')")


def attribution(name: str, description: str, params: tuple[Param, ...], method, rule=None,
                outputs: tuple[Tensor, ...] = OUTPUTS) -> Spec:
    extra = {"rule": rule} if rule else {}
    return Spec(name, description, (image(),), outputs, params, attribution_run(method), load=load_classifier,
                answer_bytes=answer_bytes, family="attribution", **extra)


SPECS = (
    attribution("saliency", "|d score / d pixel|, max over channels, of a class score or of one neuron",
                (TARGET, *SMOOTH, *NEURON), smoothed(Saliency), outputs=OUTPUTS + NEURON_OUTPUTS),
    attribution("guided_backprop", "gradients with only positive signals passed back through every ReLU, of a "
                "class score or of one neuron", (TARGET, *SMOOTH, *NEURON), smoothed(GuidedBackprop),
                outputs=OUTPUTS + NEURON_OUTPUTS),
    attribution("gradcam", "Grad-CAM on the last conv stage", (TARGET, *SMOOTH), smoothed(GradCAM)),
    attribution("occlusion", "score drop when a patch is grey",
                (TARGET, Param("patch", int, 48, 4, 224, "occluding square side (pixels at 224)"),
                 Param("stride", int, 16, 2, 224, "step between patches")),
                lambda m, p: Occlusion(m, p["patch"], p["stride"], check=check_stop), occlusion_budget),
)
