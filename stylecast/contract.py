"""The wire contract, in one place: tensor names, datatypes and shapes shared by export, server, client.

Style models take ``image`` (UINT8 [-1, -1, 3], HWC RGB, batched) and, when they hold several
styles, ``style_weights`` (FP32 [N]); they return ``stylized`` (UINT8, same H and W). The style
names, in order, are the config parameter ``styles`` (comma-separated).
"""

from __future__ import annotations

import numpy as np

IMAGE_INPUT = "image"
STYLE_WEIGHTS_INPUT = "style_weights"
STYLIZED_OUTPUT = "stylized"
STYLES_PARAMETER = "styles"
KIND_PARAMETER = "stylecast_kind"
STYLE_MODEL_KIND = "style"
TECHNIQUE_KIND = "technique"  # the sidecar's models
DESCRIPTION_PARAMETER = "description"
FAMILY_PARAMETER = "stylecast_family"  # a technique's family: attribution, optimization or gallery
TECHNIQUE_PARAM_PREFIX = "param."  # "param.<name>": "<kind>,default=..,min=..,max=..[,choices=a|b]: help"
PRECISION_PARAMETER = "stylecast_precision"  # "int8" on a quantized graph
RUNTIME_PARAMETER = "stylecast_runtime"  # a runtime of the embedded server's registry ("onnxruntime", "openvino")
# Where the weights a style model was exported from live, relative to its model folder (add-style starts
# from them). Triton ignores the parameter.
WEIGHTS_PARAMETER = "stylecast_weights"
WEIGHTS_FILE = "weights.pt"

IMAGE_DATATYPE = "UINT8"
WEIGHTS_DATATYPE = "FP32"
IMAGE_DIMS = (-1, -1, 3)
DEFAULT_MAX_BATCH_SIZE = 8
# Height and width must be multiples of this for the two stride-2 stages to invert exactly.
STRIDE = 4
# The server runs the network on the photo with this many replicated pixels on every side and crops them
# away (export/graph.py): any size gets through the reflection pads, and the lines the network paints
# along its borders are not in the answer. 4 left lines of up to 140 levels in starry_night; from 12 on,
# the served picture's outer rows and columns differ from their neighbours no more than the photo's own
# do. Training does the same, so the losses see what the server answers.
SERVING_MARGIN = 12
# A blend normally sums to 1 (the client normalizes it); larger weights extrapolate the style tables, and
# past this bound the output saturates to black or white.
MAX_STYLE_WEIGHT = 10.0


def style_weights_problem(weights: np.ndarray) -> str | None:
    """Why a ``style_weights`` row (or batch of rows) is unusable, or None when it is fine.

    The exported graph blends the style tables linearly with no check of its own: NaN or infinite
    weights give a black image, huge ones a saturated one. Servers and clients reject them instead."""
    w = np.asarray(weights, dtype=np.float64)
    if not np.isfinite(w).all():
        return f"input '{STYLE_WEIGHTS_INPUT}' holds NaN or infinite values"
    if (w < 0).any() or (w > MAX_STYLE_WEIGHT).any():
        return f"input '{STYLE_WEIGHTS_INPUT}' values must lie in [0, {MAX_STYLE_WEIGHT:g}]"
    if (w.reshape(-1, w.shape[-1]).sum(axis=1) <= 0).any() if w.ndim else w <= 0:
        return f"input '{STYLE_WEIGHTS_INPUT}' must have a positive sum (one weight per style)"
    return None


_PARAM_KINDS = {"int": int, "float": float, "str": str}


def param_text(kind: type, default, low, high, choices: tuple[str, ...], help: str) -> str:
    """A technique parameter as its model config lists it under ``param.<name>``: ``<kind>,default=..,min=..,
    max=..: help``, or ``str,default=..,choices=a|b: help``. :func:`read_param` reads it back."""
    if choices:
        return f"str,default={default},choices={'|'.join(choices)}: {help}"
    return f"{kind.__name__},default={default},min={low},max={high}: {help}"


def read_param(text: str) -> dict:
    """:func:`param_text`'s fields back: kind, default, low, high (floats or None), choices and help."""
    head, _, help_text = text.partition(": ")
    kind_name, *fields = head.split(",")
    kind = _PARAM_KINDS.get(kind_name, str)
    f = dict(x.split("=", 1) for x in fields if "=" in x)
    return {"kind": kind, "default": kind(f["default"]) if "default" in f else None,
            "low": float(f["min"]) if "min" in f else None, "high": float(f["max"]) if "max" in f else None,
            "choices": tuple(f["choices"].split("|")) if "choices" in f else (), "help": help_text}


def parse_styles(value: str) -> list[str]:
    return [s.strip() for s in value.split(",") if s.strip()]
