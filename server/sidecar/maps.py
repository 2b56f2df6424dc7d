"""Attribution techniques: a map over the image of how much each pixel mattered to one class score,
with the overlay, the explained class and its probability. One spec each."""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F
from tritonclient.grpc import model_config_pb2 as mc

from ..errors import InvalidArgument
from ..scheduler import check_stop
from .attribution import GradCAM, GuidedBackprop, Occlusion, Saliency, SmoothGrad, occlusion_windows
from .imaging import heat_overlay
from .networks import Classifier, load_classifier
from .spec import Param, Run, Spec, Tensor, image, scalar

INPUT_SIZE = 224
MAX_PIXELS = 4096 * 4096  # attribution maps come back at the input's size: 7 bytes a pixel
_BYTES_PER_PIXEL = {"map": 4, "overlay": 3}
MAX_OCCLUSION_PASSES = 1024  # about 45 s on two CPU cores; each window is one classifier forward pass

TARGET = Param("target", int, -1, -1, 999, "ImageNet class to explain; -1 = the predicted class")
SMOOTH = (Param("smooth_samples", int, 0, 0, 64, "SmoothGrad: noisy copies to average (0 = off)"),
          Param("smooth_sigma", float, 0.1, 0.0, 1.0, "SmoothGrad noise, as a fraction of the pixel range"),
          Param("seed", int, 0, 0, 2**31 - 1, "random seed"))
OUTPUTS = (Tensor("map", mc.TYPE_FP32, (-1, -1)), image("overlay"), Tensor("label", mc.TYPE_STRING, (1,)),
           scalar("class_index"), scalar("probability", mc.TYPE_FP32))


def answer_bytes(inputs: dict[str, np.ndarray], outputs: list[str]) -> int | None:
    """The map and overlay come back at the input's size."""
    if inputs.get("image") is None or inputs["image"].ndim != 3:
        return None  # validation of the request says what is wrong
    h, w = inputs["image"].shape[:2]
    if h * w > MAX_PIXELS:
        raise InvalidArgument(f"input 'image' has {h}x{w} pixels, more than {MAX_PIXELS} (4096x4096): "
                              "send a smaller image")
    return h * w * sum(_BYTES_PER_PIXEL.get(o, 0) for o in outputs) + 1024


def explain(method) -> Run:
    """The run function of an attribution: ``method(classifier, params)`` builds the attribution."""

    def run(inputs: dict[str, np.ndarray], p: dict, progress=None) -> dict[str, np.ndarray]:
        model = load_classifier()
        picture = inputs["image"]
        h, w = picture.shape[:2]
        x = torch.from_numpy(np.array(picture)).permute(2, 0, 1)[None].float()
        x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False, antialias=True)
        with torch.no_grad():
            probs = model(x).softmax(1)[0]
        target = int(p["target"]) if p["target"] >= 0 else int(probs.argmax())
        attr = method(model, p).attribute(x, torch.tensor([target]))
        amap = F.interpolate(attr[None].float(), size=(h, w), mode="bilinear", align_corners=False)[0, 0]
        amap = amap.numpy().astype(np.float32)
        return {"map": amap, "overlay": heat_overlay(picture, amap),
                "label": np.array([model.classes[target].encode()], dtype=np.object_),
                "class_index": np.array([target], np.int32),
                "probability": np.array([float(probs[target])], np.float32)}

    return run


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


def attribution(name: str, description: str, params: tuple[Param, ...], method, rule=None) -> Spec:
    extra = {"rule": rule} if rule else {}
    return Spec(name, description, (image(),), OUTPUTS, params, explain(method), load=load_classifier,
                answer_bytes=answer_bytes, family="attribution", **extra)


SPECS = (
    attribution("saliency", "|d score / d pixel|, max over channels", (TARGET, *SMOOTH), smoothed(Saliency)),
    attribution("guided_backprop", "gradients with only positive signals passed back through every ReLU",
                (TARGET, *SMOOTH), smoothed(GuidedBackprop)),
    attribution("gradcam", "Grad-CAM on the last conv stage", (TARGET, *SMOOTH), smoothed(GradCAM)),
    attribution("occlusion", "score drop when a patch is grey",
                (TARGET, Param("patch", int, 48, 4, 224, "occluding square side (pixels at 224)"),
                 Param("stride", int, 16, 2, 224, "step between patches")),
                lambda m, p: Occlusion(m, p["patch"], p["stride"], check=check_stop), occlusion_budget),
)
