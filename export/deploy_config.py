"""Production settings for a style model's Triton config: instance groups, the ONNX Runtime TensorRT
accelerator with fp16 and pinned optimization profiles, an engine cache, and model warm-up.

The network normalizes with instance statistics (mean and variance over H x W). In fp16 those
reductions lose precision on large images, so ``trt_layer_norm_fp32_fallback`` keeps the Pow/Reduce
pattern in fp32 while the convolutions run in fp16.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from stylecast.contract import IMAGE_INPUT, STYLE_WEIGHTS_INPUT

KINDS = {"auto": "KIND_AUTO", "cpu": "KIND_CPU", "gpu": "KIND_GPU"}
Shape = tuple[int, int, int]  # batch, height, width


def parse_shape(text: str) -> Shape:
    """'8x512x512' -> (8, 512, 512); '512x512' -> (1, 512, 512)."""
    parts = [int(p) for p in re.split(r"[x,]", text.strip().lower()) if p]
    if len(parts) == 2:
        parts = [1, *parts]
    if len(parts) != 3 or min(parts) < 1:
        raise ValueError(f"shape {text!r}: use BATCHxHEIGHTxWIDTH or HEIGHTxWIDTH")
    return parts[0], parts[1], parts[2]


@dataclass
class DeployOptions:
    kind: str = "auto"
    instances: int = 1
    tensorrt: bool = False
    precision: str = "fp16"  # of the TensorRT engine
    profile: tuple[Shape, Shape, Shape] | None = None  # min, opt, max input shapes
    engine_cache: str = "/tmp/stylecast-trt-cache"
    workspace_gb: int = 4
    warmup: list[tuple[int, int]] = field(default_factory=list)  # (height, width) per warm-up sample
    max_batch_size: int | None = None  # None keeps the config's


def _profile_text(shape: Shape, n_styles: int) -> str:
    b, h, w = shape
    text = f"{IMAGE_INPUT}:{b}x{h}x{w}x3"
    return text + (f",{STYLE_WEIGHTS_INPUT}:{b}x{n_styles}" if n_styles > 1 else "")


def apply(cfg, options: DeployOptions, n_styles: int):
    """Write ``options`` into a style model's ModelConfig (in place) and return it."""
    from tritonclient.grpc import model_config_pb2 as mc

    if options.kind not in KINDS:
        raise ValueError(f"instance kind {options.kind!r}: use one of {sorted(KINDS)}")
    if options.max_batch_size is not None:
        cfg.max_batch_size = options.max_batch_size
    if options.profile and max(s[0] for s in options.profile) > max(1, cfg.max_batch_size):
        raise ValueError(f"the TensorRT profile's batch {max(s[0] for s in options.profile)} exceeds "
                         f"max_batch_size {cfg.max_batch_size}; raise --max-batch-size")
    del cfg.instance_group[:]
    cfg.instance_group.add(count=options.instances, kind=getattr(mc.ModelInstanceGroup, KINDS[options.kind]))
    if cfg.HasField("optimization"):  # drop an earlier accelerator; touching it would add an empty message
        del cfg.optimization.execution_accelerators.gpu_execution_accelerator[:]
        if not cfg.optimization.execution_accelerators.ListFields():
            cfg.optimization.ClearField("execution_accelerators")
        if not cfg.optimization.ListFields():
            cfg.ClearField("optimization")
    if options.tensorrt:
        trt = cfg.optimization.execution_accelerators.gpu_execution_accelerator.add(name="tensorrt")
        params = {"precision_mode": options.precision.upper(),
                  "max_workspace_size_bytes": str(options.workspace_gb << 30),
                  "trt_engine_cache_enable": "true", "trt_engine_cache_path": options.engine_cache,
                  "trt_layer_norm_fp32_fallback": "true"}
        if options.profile:
            for key, shape in zip(("min", "opt", "max"), options.profile, strict=True):
                params[f"trt_profile_{key}_shapes"] = _profile_text(shape, n_styles)
        trt.parameters.update(params)
    del cfg.model_warmup[:]
    for h, w in options.warmup:
        sample = cfg.model_warmup.add(name=f"{h}x{w}", batch_size=1)
        sample.inputs[IMAGE_INPUT].data_type = mc.TYPE_UINT8
        sample.inputs[IMAGE_INPUT].dims.extend([h, w, 3])
        sample.inputs[IMAGE_INPUT].random_data = True
        if n_styles > 1:
            sample.inputs[STYLE_WEIGHTS_INPUT].data_type = mc.TYPE_FP32
            sample.inputs[STYLE_WEIGHTS_INPUT].dims.extend([n_styles])
            # uniform weights, a blend clients may send (all zeros is refused by the contract's checks)
            sample.inputs[STYLE_WEIGHTS_INPUT].input_data_file = warmup_weights_file(n_styles)
    return cfg


def warmup_weights_file(n_styles: int) -> str:
    return f"uniform_style_weights_{n_styles}"


def write_warmup_files(model_dir, n_styles: int) -> None:
    """The data files the warm-up samples name, in ``model_dir/warmup/`` where Triton reads them."""
    from pathlib import Path

    import numpy as np

    folder = Path(model_dir) / "warmup"
    folder.mkdir(exist_ok=True)
    (folder / warmup_weights_file(n_styles)).write_bytes(np.full(n_styles, 1.0 / n_styles, np.float32).tobytes())


def configure(model_dir, options: DeployOptions) -> str:
    """Rewrite ``model_dir/config.pbtxt`` of an exported style model with ``options``; returns the text."""
    from pathlib import Path

    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as mc

    from stylecast.contract import STYLES_PARAMETER, parse_styles

    path = Path(model_dir) / "config.pbtxt"
    cfg = text_format.Parse(path.read_text(), mc.ModelConfig())
    styles = parse_styles(cfg.parameters[STYLES_PARAMETER].string_value) if STYLES_PARAMETER in cfg.parameters else []
    n_styles = max(1, len(styles))
    text = text_format.MessageToString(apply(cfg, options, n_styles))
    text_format.Parse(text, mc.ModelConfig())
    if options.warmup and n_styles > 1:
        write_warmup_files(model_dir, n_styles)
    path.write_text(text)
    return text
