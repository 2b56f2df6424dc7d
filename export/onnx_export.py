"""Export a trained style network to ONNX in a Triton model repository, with a parity check."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from stylecast.training.checkpoint import load_network
from stylecast.training.networks import TransformerNet

from stylecast.contract import (
    DEFAULT_MAX_BATCH_SIZE,
    IMAGE_INPUT,
    KIND_PARAMETER,
    PRECISION_PARAMETER,
    STYLE_MODEL_KIND,
    STYLE_WEIGHTS_INPUT,
    STYLES_PARAMETER,
    STYLIZED_OUTPUT,
    WEIGHTS_FILE,
    WEIGHTS_PARAMETER,
)

from .graph import ServingModel

log = logging.getLogger(__name__)

OPSET = 17
# ORT and PyTorch differ by float rounding only; after rounding to uint8 a pixel may land one level
# off where the float value sits near .5. Anything larger means a broken graph.
PARITY_MAX_LEVELS = 2
PARITY_MEAN_LEVELS = 0.05
# A constant image (such as 1x1) is ill-conditioned under instance norm (zero variance amplifies
# float noise), so parity sizes are non-degenerate; tests check that 1x1 still keeps its size.
PARITY_SIZES = ((1, 64, 64), (2, 37, 50), (1, 101, 77), (1, 3, 10))


@dataclass
class Parity:
    size: tuple[int, int, int]
    max_abs: int
    mean_abs: float
    against: str = "PyTorch"  # what the exported graph was compared with
    p99: float | None = None


def _int8(onnx_path: Path, n_styles: int, scales_of: Path | None = None) -> Parity:
    """Quantize the written graph in place (keeping the activation scales of the int8 graph ``scales_of``, if
    given); its parity row against the fp32 graph."""
    from .quantize import PARITY_PHOTOS, PHOTO_SIDE, quantize_checked

    d = quantize_checked(onnx_path, n_styles, scales_of)
    return Parity((PARITY_PHOTOS, PHOTO_SIDE, PHOTO_SIDE), int(d["max"]), d["mean"], "the fp32 graph (int8)", d["p99"])


def export_onnx(net: TransformerNet, path: Path) -> None:
    """Write the serving graph with dynamic batch, height and width."""
    model = ServingModel(net.eval()).eval()
    image = torch.randint(0, 256, (1, 64, 64, 3), dtype=torch.uint8)
    args: tuple = (image,)
    names = [IMAGE_INPUT]
    axes = {IMAGE_INPUT: {0: "batch", 1: "height", 2: "width"}, STYLIZED_OUTPUT: {0: "batch", 1: "height", 2: "width"}}
    if net.n_styles > 1:
        args = (image, torch.full((1, net.n_styles), 1.0 / net.n_styles))
        names.append(STYLE_WEIGHTS_INPUT)
        axes[STYLE_WEIGHTS_INPUT] = {0: "batch"}
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        torch.onnx.export(model, args, str(path), input_names=names, output_names=[STYLIZED_OUTPUT],
                          dynamic_axes=axes, opset_version=OPSET, dynamo=False)
    import onnx

    onnx.checker.check_model(onnx.load(str(path)), full_check=True)


def parity_check(net: TransformerNet, path: Path, sizes=PARITY_SIZES, seed: int = 0) -> list[Parity]:
    """Compare ONNX Runtime with PyTorch on several sizes, in uint8 output levels. Raises above tolerance."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    model = ServingModel(net.eval()).eval()
    rng = np.random.default_rng(seed)
    report = []
    for b, h, w in sizes:
        image = rng.integers(0, 256, (b, h, w, 3), dtype=np.uint8)
        feeds = {IMAGE_INPUT: image}
        args = [torch.from_numpy(image)]
        if net.n_styles > 1:
            wts = rng.dirichlet(np.ones(net.n_styles), size=b).astype(np.float32)
            feeds[STYLE_WEIGHTS_INPUT] = wts
            args.append(torch.from_numpy(wts))
        ort_out = sess.run([STYLIZED_OUTPUT], feeds)[0]
        with torch.no_grad():
            pt_out = model(*args).numpy()
        if ort_out.shape != (b, h, w, 3) or pt_out.shape != ort_out.shape:
            raise AssertionError(f"output shape {ort_out.shape} for input {(b, h, w, 3)}")
        diff = np.abs(ort_out.astype(np.int16) - pt_out.astype(np.int16))
        report.append(Parity((b, h, w), int(diff.max()), float(diff.mean())))
    for r in report:
        log.info("parity %s: max %d levels, mean %.4f", r.size, r.max_abs, r.mean_abs)
        if r.max_abs > PARITY_MAX_LEVELS or r.mean_abs > PARITY_MEAN_LEVELS:
            raise AssertionError(f"ONNX Runtime differs from PyTorch at {r.size}: max {r.max_abs} levels "
                                 f"(limit {PARITY_MAX_LEVELS}), mean {r.mean_abs:.4f} (limit {PARITY_MEAN_LEVELS})")
    return report


def model_config(name: str, styles: list[str], multi: bool, max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
                 max_queue_delay_us: int = 2000):
    """Triton ModelConfig for a style model following the wire contract."""
    from tritonclient.grpc import model_config_pb2 as mc

    cfg = mc.ModelConfig(name=name, platform="onnxruntime_onnx", max_batch_size=max_batch_size)
    cfg.input.add(name=IMAGE_INPUT, data_type=mc.TYPE_UINT8, dims=[-1, -1, 3])
    if multi:
        cfg.input.add(name=STYLE_WEIGHTS_INPUT, data_type=mc.TYPE_FP32, dims=[len(styles)])
    cfg.output.add(name=STYLIZED_OUTPUT, data_type=mc.TYPE_UINT8, dims=[-1, -1, 3])
    cfg.dynamic_batching.max_queue_delay_microseconds = max_queue_delay_us
    cfg.instance_group.add(count=1, kind=mc.ModelInstanceGroup.KIND_AUTO)
    cfg.parameters[STYLES_PARAMETER].string_value = ",".join(styles)
    cfg.parameters[KIND_PARAMETER].string_value = STYLE_MODEL_KIND
    return cfg


def model_versions(model_dir: Path) -> list[int]:
    """The version folders of a model in the repository, in order (none if the model has no folder yet)."""
    return sorted(int(p.name) for p in model_dir.glob("*") if p.is_dir() and p.name.isdigit())


def export_to_repository(checkpoint: str | Path, name: str, repository: str | Path,
                         max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
                         deploy=None, int8: bool = False, base_config=None,
                         int8_scales_of: Path | None = None) -> tuple[Path, list[Parity]]:
    """Export, check and write ``<repository>/<name>/{config.pbtxt, N/model.onnx, N/weights.pt}``; a
    re-export adds N+1. With ``int8`` the written graph is the statically quantized one
    (``export/quantize.py``), checked against the fp32 graph on held-out photos; its row in the report says so.
    ``base_config`` (the model's current config) keeps its deployment settings; only the styles change.
    ``int8_scales_of`` (the model's current int8 graph) keeps its activation scales, so that the styles the
    new graph shares with it answer the same pixels.

    The version is built in a hidden folder and renamed into place once it passed its checks, then the
    config is replaced: a failed or interrupted export leaves the repository as it was."""
    import shutil
    import uuid

    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as mc

    net, styles = load_network(checkpoint)
    model_dir = Path(repository) / name
    staging = model_dir / f".staging-{uuid.uuid4().hex[:8]}"
    try:
        onnx_path = staging / "model.onnx"
        export_onnx(net, onnx_path)
        report = parity_check(net, onnx_path)
        if int8:
            report.append(_int8(onnx_path, net.n_styles, int8_scales_of))
        torch.save(_weights_only(checkpoint), staging / WEIGHTS_FILE)
        cfg = _config(name, styles, net.n_styles, max_batch_size, deploy, int8, base_config)
        version = max(model_versions(model_dir), default=0) + 1
        cfg.parameters[WEIGHTS_PARAMETER].string_value = f"{version}/{WEIGHTS_FILE}"
        text = text_format.MessageToString(cfg)
        text_format.Parse(text, mc.ModelConfig())  # the written text must parse back as Triton's ModelConfig
        staging.rename(model_dir / str(version))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if deploy is not None and deploy.warmup and net.n_styles > 1:
        from .deploy_config import write_warmup_files

        write_warmup_files(model_dir, net.n_styles)
    tmp = model_dir / ".config.pbtxt.tmp"
    tmp.write_text(text)
    tmp.replace(model_dir / "config.pbtxt")
    log.info("exported %s version %d (%d styles) to %s", name, version, len(styles), model_dir)
    return model_dir / str(version) / "model.onnx", report


def _weights_only(checkpoint: str | Path) -> dict:
    """The checkpoint without its optimizer and RNG states: what a later add-style starts from."""
    s = torch.load(checkpoint, map_location="cpu", weights_only=False)
    keep = ("model", "step", "config", "style_names", "n_styles", "width", "arch", "loss_network")
    return {k: s[k] for k in keep if k in s}


def _config(name: str, styles: list[str], n_styles: int, max_batch_size: int, deploy, int8: bool, base_config):
    if base_config is None:
        cfg = model_config(name, styles, n_styles > 1, max_batch_size)
    else:
        cfg = type(base_config)()
        cfg.CopyFrom(base_config)
        for t in cfg.input:
            if t.name == STYLE_WEIGHTS_INPUT:
                t.dims[:] = [len(styles)]
        cfg.parameters[STYLES_PARAMETER].string_value = ",".join(styles)
        # warm-up samples feed style_weights of the old length: rebuilt by `stylecast configure --warmup`
        del cfg.model_warmup[:]
    if int8:
        cfg.parameters[PRECISION_PARAMETER].string_value = "int8"
    elif PRECISION_PARAMETER in cfg.parameters:
        del cfg.parameters[PRECISION_PARAMETER]
    if deploy is not None:  # export.deploy_config.DeployOptions: GPU instances, TensorRT, warm-up
        from .deploy_config import apply

        apply(cfg, deploy, n_styles)
    return cfg
