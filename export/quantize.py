"""Static int8 quantization of an exported style model with ONNX Runtime's quantization tool (QDQ format,
calibrated on photos), and its parity measure against the fp32 graph.

The convolutions take int8 weights and activations, except the first and the last: they read and write
pixels (3 channels, a few percent of the work), and quantized they cost most of the error (on the fast
model, 5.4 levels mean and 30 at p99 off fp32 with them, 3.1 and 18 without). Instance norm, the pre- and
post-processing stay in fp32 (ONNX Runtime runs QDQ pairs around them). Calibration runs the fp32 graph
on real photos with one-hot style weights, so every style's activation range is seen.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from stylecast.contract import IMAGE_INPUT, STYLE_WEIGHTS_INPUT, STYLIZED_OUTPUT

log = logging.getLogger(__name__)

# Parity that fits int8: output levels off the fp32 graph on held-out photos (the fp32 graph itself is held
# to 2 levels of PyTorch). A calibrated fast model sits near 3.1 mean and 18 at the 99th percentile.
INT8_MEAN_LEVELS = 6.0
INT8_P99_LEVELS = 30.0
CALIBRATION_PHOTOS = 8
PARITY_PHOTOS = 4
PHOTO_SIDE = 256


def photo_squares(paths: Sequence[Path], side: int = PHOTO_SIDE) -> list[np.ndarray]:
    """Photos as uint8 HWC squares (resized, not cropped)."""
    from PIL import Image

    return [np.asarray(Image.open(p).convert("RGB").resize((side, side), Image.Resampling.LANCZOS)) for p in paths]


def calibration_photos(n: int = CALIBRATION_PHOTOS) -> list[Path]:
    """Bundled photos that the held-out set does not use (calibration must not see the judged photos)."""
    from stylecast.nets.images import bundled_photos, heldout_photos

    held_out = {p for _, p in heldout_photos()}
    return [p for _, p in bundled_photos() if p not in held_out][:n]


def parity_photos(n: int = PARITY_PHOTOS) -> list[Path]:
    from stylecast.nets.images import heldout_photos

    return [p for _, p in heldout_photos()][:n]


def calibration_feeds(photos: Sequence[np.ndarray], n_styles: int) -> Iterator[dict[str, np.ndarray]]:
    """One feed per (photo, style): uint8 [1, H, W, 3] and a one-hot weight row."""
    for photo in photos:
        for s in range(max(1, n_styles)):
            feed = {IMAGE_INPUT: photo[None]}
            if n_styles > 1:
                feed[STYLE_WEIGHTS_INPUT] = np.eye(n_styles, dtype=np.float32)[s:s + 1]
            yield feed


def pixel_convs(path: Path) -> list[str]:
    """Names of the first and the last Conv of the graph (in its topological order): the ones on pixels."""
    import onnx

    convs = [n.name for n in onnx.load(str(path)).graph.node if n.op_type == "Conv"]
    return sorted({convs[0], convs[-1]}) if convs else []


def activation_ranges(int8_path: Path) -> dict[str, list[dict]]:
    """The scale and zero point of every activation an int8 QDQ graph quantizes, as ONNX Runtime's
    ``TensorQuantOverrides``: the calibration of that graph, to be kept by a later one."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(int8_path)).graph
    inits = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    return {n.input[0]: [{"scale": inits[n.input[1]], "zero_point": inits[n.input[2]]}]
            for n in graph.node if n.op_type == "QuantizeLinear" and n.input[0] not in inits}


def quantize(fp32_path: Path, int8_path: Path, photos: Sequence[np.ndarray], n_styles: int,
             ranges: dict[str, list[dict]] | None = None) -> Path:
    """Write the int8 QDQ model of ``fp32_path`` to ``int8_path`` (the pre-processed copy is removed).

    ``ranges`` (:func:`activation_ranges` of an earlier graph) fixes those activations' scales: a style
    added to or removed from an int8 model then leaves every other style's pixels as they were, where a
    fresh calibration over the new set of styles moves them (by up to 85 levels, measured)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._feeds = calibration_feeds(photos, n_styles)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._feeds, None)

    prepared = int8_path.with_suffix(".pre.onnx")
    int8_path.parent.mkdir(parents=True, exist_ok=True)
    quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
    try:
        quantize_static(str(prepared), str(int8_path), Reader(), quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True,
                        op_types_to_quantize=["Conv"], nodes_to_exclude=pixel_convs(prepared),
                        extra_options={"TensorQuantOverrides": ranges or {}})
    finally:
        prepared.unlink(missing_ok=True)
    log.info("int8 model written to %s (calibrated on %d photos x %d styles)", int8_path, len(photos), n_styles)
    return int8_path


def level_difference(a_path: Path, b_path: Path, photos: Sequence[np.ndarray], n_styles: int) -> dict[str, float]:
    """Mean and 99th-percentile absolute difference in output levels between two graphs on the photos."""
    import onnxruntime as ort

    a = ort.InferenceSession(str(a_path), providers=["CPUExecutionProvider"])
    b = ort.InferenceSession(str(b_path), providers=["CPUExecutionProvider"])
    diffs = []
    for feed in calibration_feeds(photos, n_styles):
        ya = a.run([STYLIZED_OUTPUT], feed)[0].astype(np.int16)
        yb = b.run([STYLIZED_OUTPUT], feed)[0].astype(np.int16)
        diffs.append(np.abs(ya - yb).ravel())
    d = np.concatenate(diffs)
    return {"mean": float(d.mean()), "p99": float(np.percentile(d, 99)), "max": float(d.max())}


def quantize_checked(onnx_path: Path, n_styles: int, scales_of: Path | None = None) -> dict[str, float]:
    """Replace the fp32 graph at ``onnx_path`` with its int8 graph, calibrated on bundled training photos
    (with ``scales_of``, an earlier int8 graph of the same network, its activation scales kept instead), after
    checking it against the fp32 graph on held-out photos. Raises (leaving the fp32 graph) above
    INT8_MEAN_LEVELS or INT8_P99_LEVELS."""
    int8_path = onnx_path.with_name("int8.onnx")
    ranges = activation_ranges(scales_of) if scales_of is not None else None
    quantize(onnx_path, int8_path, photo_squares(calibration_photos()), n_styles, ranges)
    diff = level_difference(onnx_path, int8_path, photo_squares(parity_photos()), n_styles)
    log.info("int8 against fp32 on %d held-out photos: mean %.2f levels, p99 %.0f, max %.0f",
             PARITY_PHOTOS, diff["mean"], diff["p99"], diff["max"])
    if diff["mean"] > INT8_MEAN_LEVELS or diff["p99"] > INT8_P99_LEVELS:
        int8_path.unlink()
        raise AssertionError(f"int8 graph is {diff['mean']:.2f} levels off fp32 on average (limit "
                             f"{INT8_MEAN_LEVELS}) and {diff['p99']:.0f} at the 99th percentile (limit "
                             f"{INT8_P99_LEVELS}): calibrate on more photos or keep fp32")
    int8_path.replace(onnx_path)
    return diff
