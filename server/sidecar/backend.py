"""Techniques as models: each has a ModelConfig built in code, typed request parameters with defaults and
bounds (listed in the config), and a run function. Registered into the repository as virtual models."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F
from tritonclient.grpc import model_config_pb2 as mc

from ..backend import Backend
from ..errors import InvalidArgument
from ..scheduler import check_stop
from .attribution import GradCAM, GuidedBackprop, Occlusion, Saliency, SmoothGrad, occlusion_windows
from .imaging import heat_overlay
from .networks import Classifier, load_classifier

log = logging.getLogger(__name__)

# Protocol-level request parameters that are not technique knobs.
RESERVED = {"sequence_id", "sequence_start", "sequence_end", "priority", "timeout"}
INPUT_SIZE = 224
MAX_PIXELS = 4096 * 4096  # attribution maps come back at the input's size: 7 bytes a pixel
_BYTES_PER_PIXEL = {"map": 4, "overlay": 3}


@dataclass(frozen=True)
class Param:
    """A typed request parameter with a default and bounds (numbers) or a set of choices (strings)."""

    name: str
    kind: type
    default: float | int | str
    low: float | int | None
    high: float | int | None
    help: str
    choices: tuple[str, ...] = ()

    def parse(self, value) -> float | int | str:
        if self.choices:
            if str(value) not in self.choices:
                raise InvalidArgument(f"parameter '{self.name}' = {value!r} is not one of {list(self.choices)}")
            return str(value)
        if isinstance(value, bool) or (self.kind is int and isinstance(value, float) and not value.is_integer()):
            raise InvalidArgument(f"parameter '{self.name}' must be {self.kind.__name__}, got {value!r}")
        try:
            v = self.kind(value)
        except (TypeError, ValueError) as e:
            raise InvalidArgument(f"parameter '{self.name}' must be {self.kind.__name__}, got {value!r}") from e
        if not self.low <= v <= self.high:
            raise InvalidArgument(f"parameter '{self.name}' = {v} is out of range [{self.low}, {self.high}]")
        return v

    def spec(self) -> str:
        if self.choices:
            return f"str,default={self.default},choices={'|'.join(self.choices)}: {self.help}"
        return f"{self.kind.__name__},default={self.default},min={self.low},max={self.high}: {self.help}"


def choice(name: str, default: str, choices: tuple[str, ...], help: str) -> Param:
    return Param(name, str, default, None, None, help, choices)


TARGET = Param("target", int, -1, -1, 999, "ImageNet class to explain; -1 = the predicted class")
SMOOTH = [Param("smooth_samples", int, 0, 0, 64, "SmoothGrad: noisy copies to average (0 = off)"),
          Param("smooth_sigma", float, 0.1, 0.0, 1.0, "SmoothGrad noise, as a fraction of the pixel range"),
          Param("seed", int, 0, 0, 2**31 - 1, "random seed")]


def _no_rule(params: dict) -> None:
    return None


@dataclass(frozen=True)
class Technique:
    name: str
    params: tuple[Param, ...]
    build: Callable[[Classifier, dict], object]
    description: str
    rule: Callable[[dict], None] = _no_rule  # checks across parameters, before any work


def _smoothed(cls):
    def build(model: Classifier, p: dict):
        t = cls(model)
        if p.get("smooth_samples", 0) > 0:
            return SmoothGrad(t, p["smooth_samples"], p["smooth_sigma"], p["seed"], check=check_stop)
        return t
    return build


MAX_OCCLUSION_PASSES = 1024  # about 45 s on two CPU cores; each window is one classifier forward pass


def _occlusion_budget(p: dict) -> None:
    n = len(occlusion_windows(INPUT_SIZE, INPUT_SIZE, p["patch"], p["stride"]))
    if n > MAX_OCCLUSION_PASSES:
        raise InvalidArgument(
            f"occlusion with patch {p['patch']} and stride {p['stride']} needs {n} forward passes, more than the "
            f"{MAX_OCCLUSION_PASSES} allowed: raise 'stride' (or 'patch')")


TECHNIQUES = [
    Technique("saliency", (TARGET, *SMOOTH), _smoothed(Saliency), "|d score / d pixel|, max over channels"),
    Technique("guided_backprop", (TARGET, *SMOOTH), _smoothed(GuidedBackprop),
              "gradients with only positive signals passed back through every ReLU"),
    Technique("gradcam", (TARGET, *SMOOTH), _smoothed(GradCAM), "Grad-CAM on the last conv stage"),
    Technique("occlusion", (TARGET, Param("patch", int, 48, 4, 224, "occluding square side (pixels at 224)"),
                            Param("stride", int, 16, 2, 224, "step between patches")),
              lambda m, p: Occlusion(m, p["patch"], p["stride"], check=check_stop), "score drop when a patch is grey",
              _occlusion_budget),
]


def technique_config(t: Technique) -> mc.ModelConfig:
    cfg = mc.ModelConfig(name=t.name, backend="stylecast_sidecar", max_batch_size=0)
    cfg.input.add(name="image", data_type=mc.TYPE_UINT8, dims=[-1, -1, 3])
    cfg.output.add(name="map", data_type=mc.TYPE_FP32, dims=[-1, -1])
    cfg.output.add(name="overlay", data_type=mc.TYPE_UINT8, dims=[-1, -1, 3])
    cfg.output.add(name="label", data_type=mc.TYPE_STRING, dims=[1])
    cfg.output.add(name="class_index", data_type=mc.TYPE_INT32, dims=[1])
    cfg.output.add(name="probability", data_type=mc.TYPE_FP32, dims=[1])
    return describe(cfg, t.description, t.params)


def describe(cfg: mc.ModelConfig, description: str, params: tuple[Param, ...]) -> mc.ModelConfig:
    """The parts every technique's config shares: one instance, its kind, description and parameters."""
    cfg.instance_group.add(count=1, kind=mc.ModelInstanceGroup.KIND_CPU)
    cfg.parameters["stylecast_kind"].string_value = "technique"
    cfg.parameters["description"].string_value = description
    for p in params:
        cfg.parameters[f"param.{p.name}"].string_value = p.spec()
    return cfg


class SidecarBackend(Backend):
    """A technique served as a model: typed request parameters with defaults and bounds."""

    platform = "stylecast_sidecar"

    def __init__(self, config: mc.ModelConfig, params: tuple[Param, ...]) -> None:
        super().__init__(config, Path("."))
        self._params = {p.name: p for p in params}

    def check_parameters(self, parameters: dict) -> dict:
        unknown = sorted(k for k in parameters if k not in self._params and k not in RESERVED)
        if unknown:
            raise InvalidArgument(f"unknown parameter(s) {unknown} for '{self.config.name}'; "
                                  f"known: {sorted(self._params)}")
        return {name: (p.parse(parameters[name]) if name in parameters else p.default)
                for name, p in self._params.items()}


class TechniqueBackend(SidecarBackend):
    def __init__(self, technique: Technique, classifier: Callable[[], Classifier] = load_classifier) -> None:
        super().__init__(technique_config(technique), technique.params)
        self.technique = technique
        self._classifier = classifier

    def check_parameters(self, parameters: dict) -> dict:
        params = super().check_parameters(parameters)
        self.technique.rule(params)
        return params

    def load(self) -> None:
        self.model = self._classifier()

    def response_bytes(self, inputs: dict[str, np.ndarray], outputs: list[str]) -> int | None:
        if inputs.get("image") is None or inputs["image"].ndim != 3:
            return None  # validation of the request says what is wrong
        h, w = inputs["image"].shape[:2]
        if h * w > MAX_PIXELS:
            raise InvalidArgument(f"input 'image' of {self.config.name} has {h}x{w} pixels, more than "
                                  f"{MAX_PIXELS} (4096x4096): send a smaller image")
        return h * w * sum(_BYTES_PER_PIXEL.get(o, 0) for o in outputs) + 1024

    def infer(self, inputs: dict[str, np.ndarray], outputs: list[str], parameters: dict,
              emit=None) -> dict[str, np.ndarray]:
        image = inputs["image"]
        h, w = image.shape[:2]
        x = torch.from_numpy(np.array(image)).permute(2, 0, 1)[None].float()
        x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False, antialias=True)
        with torch.no_grad():
            probs = self.model(x).softmax(1)[0]
        target = int(parameters["target"]) if parameters["target"] >= 0 else int(probs.argmax())
        attr = self.technique.build(self.model, parameters).attribute(x, torch.tensor([target]))
        amap = F.interpolate(attr[None].float(), size=(h, w), mode="bilinear", align_corners=False)[0, 0]
        amap = amap.numpy().astype(np.float32)
        result = {
            "map": amap,
            "overlay": heat_overlay(image, amap),
            "label": np.array([self.model.classes[target].encode()], dtype=np.object_),
            "class_index": np.array([target], np.int32),
            "probability": np.array([float(probs[target])], np.float32),
        }
        return {k: result[k] for k in outputs}
