"""int8 export for CPU hosts: static QDQ quantization calibrated on photos, checked against the fp32 graph."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from stylecast.export import quantize
from stylecast.export.onnx_export import export_to_repository
from stylecast.export.quantize import parity_photos, photo_squares
from stylecast.server.config import read_config

from stylecast.contract import PRECISION_PARAMETER

FAST = Path(__file__).resolve().parent.parent / "checkpoints" / "starter8_fast.pt"


def test_int8_export_quantizes_the_convolutions_and_serves_close_to_fp32(tmp_path):
    """The shipped fast model: its int8 graph passes the int8 parity and answers nearly the fp32 picture."""
    from stylecast.client import Client
    from stylecast.server.app import Server, ServerOptions

    repo = tmp_path / "repo"
    fp32_path, _ = export_to_repository(FAST, "fp32", repo)
    int8_path, report = export_to_repository(FAST, "int8", repo, int8=True)
    int8_graph = onnx.load(str(int8_path)).graph
    ops = [n.op_type for n in int8_graph.node]
    convs = [n.op_type for n in onnx.load(str(fp32_path)).graph.node].count("Conv")
    assert ops.count("Conv") == convs and ops.count("DequantizeLinear") >= 2 * (convs - 2)  # weights and inputs
    weights = {i.name for i in int8_graph.initializer}
    float_weight = [n.name for n in int8_graph.node if n.op_type == "Conv" and n.input[1] in weights]
    assert float_weight == quantize.pixel_convs(fp32_path), "only the convolutions on pixels keep fp32 weights"
    check = report[-1]
    assert check.against == "the fp32 graph (int8)" and check.mean_abs <= quantize.INT8_MEAN_LEVELS
    assert read_config(repo / "int8").parameters[PRECISION_PARAMETER].string_value == "int8"
    assert PRECISION_PARAMETER not in read_config(repo / "fp32").parameters
    photo = photo_squares(parity_photos(1), 96)[0]
    srv = Server(ServerOptions(model_repository=repo, port=0, metrics_port=None, sidecar=False))
    port = srv.start()
    try:
        with Client(f"127.0.0.1:{port}") as c:
            a, b = (c.stylize(photo, "great_wave", model=m).astype(int) for m in ("fp32", "int8"))
    finally:
        srv.stop()
    assert 0 < np.abs(a - b).mean() <= quantize.INT8_MEAN_LEVELS  # quantized, yet the same picture


def test_an_int8_graph_off_its_fp32_graph_is_refused_and_not_written(tiny_style_checkpoint, tmp_path, monkeypatch):
    monkeypatch.setattr(quantize, "INT8_MEAN_LEVELS", 0.0)
    with pytest.raises(AssertionError, match="levels off fp32"):
        export_to_repository(tiny_style_checkpoint, "int8", tmp_path / "repo", int8=True)
    assert not (tmp_path / "repo" / "int8" / "1").exists()


def test_a_style_removed_from_an_int8_model_leaves_the_others_pixels_as_they_were(tmp_path, monkeypatch):
    """An int8 model's next version keeps its activation scales: with the widest style removed, the styles
    left answer exactly what they did. A fresh calibration of the same weights shrinks the scales to the
    styles left, and their pixels move."""
    import torch
    from stylecast.export.styles import remove_style, shared_styles_difference
    from stylecast.training.networks import TransformerNet

    for limit in ("INT8_MEAN_LEVELS", "INT8_P99_LEVELS"):  # a random network is far from int8-friendly
        monkeypatch.setattr(quantize, limit, 255.0)
    torch.manual_seed(0)
    net = TransformerNet(n_styles=4, width=0.25)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name.endswith("cin.gamma"):
                p.normal_(1.0, 0.3)
                p[3] *= 4  # "wide": the style with the largest activations
            elif name.endswith("cin.beta"):
                p.normal_(0.0, 0.3)
    ckpt = tmp_path / "w.pt"
    torch.save({"model": net.state_dict(), "step": 0, "n_styles": 4, "width": 0.25,
                "style_names": ["red", "green", "blue", "wide"]}, ckpt)
    repo = tmp_path / "repo"
    v1, _ = export_to_repository(ckpt, "m", repo, int8=True)
    change = remove_style("m", "wide", repo, out=tmp_path / "run")
    fresh, _ = export_to_repository(tmp_path / "run" / "weights.pt", "fresh", repo, int8=True)
    photos = photo_squares(parity_photos(2), 96)
    kept, moved = shared_styles_difference(v1, change.onnx, photos), shared_styles_difference(v1, fresh, photos)
    assert kept == 0, f"the styles left moved by up to {kept} levels"
    assert moved > 0
