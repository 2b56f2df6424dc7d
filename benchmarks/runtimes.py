"""Runtimes for the style network on this machine, on the shipped starter model: latency at several sizes
and output quality against ONNX Runtime fp32 (the reference) on held-out photos.

    .venv/bin/python benchmarks/runtimes.py [--sizes 256,512,1080p] [--repeats 5] [--compile]

Quality gate for a faster path: PSNR >= 40 dB and mean absolute difference <= 1 grey level. Runs are
interleaved (one of each runtime per round) so machine noise hits them alike. Writes
benchmarks/results/runtimes.json.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from report import latest_onnx, print_table, save

ROOT = Path(__file__).resolve().parent.parent
SIZES = {"256": (256, 256), "512": (512, 512), "1080p": (1080, 1920)}
Runner = Callable[[np.ndarray, np.ndarray], np.ndarray]  # uint8 [1,H,W,3], fp32 [1,N] -> uint8 [1,H,W,3]


def onnx_path(model: str) -> Path:
    return latest_onnx(ROOT / "model_repository" / model)


def ort_runner(path: Path, tuned: bool) -> Runner:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if tuned:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.intra_op_num_threads = os.cpu_count() or 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return lambda x, w: sess.run(None, {"image": x, "style_weights": w})[0]


def openvino_runner(path: Path, precision: str) -> Runner:
    import openvino as ov

    core = ov.Core()
    compiled = core.compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": precision,
                                                     "PERFORMANCE_HINT": "LATENCY"})
    request = compiled.create_infer_request()
    return lambda x, w: request.infer({"image": x, "style_weights": w})[compiled.output(0)]


def torch_runner(checkpoint: Path, compiled: bool, bf16: bool) -> Runner:
    import torch
    from stylecast.export.graph import ServingModel
    from stylecast.training.checkpoint import load_network

    net, _ = load_network(checkpoint)
    model = ServingModel(net).eval()
    fn = torch.compile(model, dynamic=False) if compiled else model

    def run(x: np.ndarray, w: np.ndarray) -> np.ndarray:
        with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=bf16):
            return fn(torch.from_numpy(x), torch.from_numpy(w)).numpy()
    return run


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="starter8")
    ap.add_argument("--sizes", default="256,512,1080p")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--photos", type=int, default=4, help="held-out photos for the quality gate (at 512 px)")
    ap.add_argument("--compile", action="store_true", help="also torch.compile (minutes of compilation per size)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "runtimes.json"))
    a = ap.parse_args()

    import openvino as ov
    from PIL import Image
    from stylecast.nets.images import heldout_photos

    from stylecast.sysinfo import cpu_has_amx

    path, ckpt = onnx_path(a.model), ROOT / "checkpoints" / f"{a.model}.pt"
    runners: dict[str, Runner] = {
        "onnxruntime fp32": ort_runner(path, tuned=False),
        "onnxruntime fp32 tuned": ort_runner(path, tuned=True),
        "openvino fp32": openvino_runner(path, "f32"),
        "pytorch eager fp32": torch_runner(ckpt, compiled=False, bf16=False),
    }
    skipped = {}
    if "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        runners["openvino bf16"] = openvino_runner(path, "bf16")
    else:
        skipped["openvino bf16"] = "this CPU has no bf16 support (no AVX512_BF16 / AMX)"
    if a.compile:
        runners["torch.compile fp32"] = torch_runner(ckpt, compiled=True, bf16=False)
        if cpu_has_amx():
            runners["torch.compile bf16"] = torch_runner(ckpt, compiled=True, bf16=True)
        else:
            skipped["torch.compile bf16"] = "no AMX: bf16 convolutions are 24-42x slower than fp32 here"
    w = np.zeros((1, 8), np.float32)
    w[0, 0] = 1
    rows = []
    for size in a.sizes.split(","):
        h, wd = SIZES[size]
        x = np.random.default_rng(0).integers(0, 256, (1, h, wd, 3), dtype=np.uint8)
        times: dict[str, list[float]] = {k: [] for k in runners}
        for run in runners.values():
            run(x, w)  # warm-up (and compilation) outside the timing
        for _ in range(a.repeats):
            for name, run in runners.items():
                t0 = time.perf_counter()
                run(x, w)
                times[name].append(time.perf_counter() - t0)
        ref = statistics.median(times["onnxruntime fp32"])
        for name, ts in times.items():
            rows.append({"size": size, "runtime": name, "median_ms": statistics.median(ts) * 1e3,
                         "vs_ort": statistics.median(ts) / ref})
    quality = {name: {"psnr_db": [], "mad": []} for name in runners}
    for _, p in heldout_photos()[: a.photos]:
        img = Image.open(p).convert("RGB").resize((512, 512), Image.Resampling.LANCZOS)
        x = np.asarray(img)[None]
        ref = runners["onnxruntime fp32"](x, w)
        for name, run in runners.items():
            out = run(x, w)
            quality[name]["psnr_db"].append(psnr(out, ref))
            quality[name]["mad"].append(float(np.abs(out.astype(np.int16) - ref).mean()))
    for r in rows:
        q = quality[r["runtime"]]
        r["psnr_db"], r["mad"] = min(q["psnr_db"]), max(q["mad"])
        r["passes"] = r["psnr_db"] >= 40 and r["mad"] <= 1
    print_table(rows, [("size", "size", "<6"), ("runtime", "runtime", "<24"), ("median_ms", "median ms", ".1f"),
                       ("vs_ort", "x ORT", ".3f"), ("psnr_db", "PSNR dB", ".1f"), ("mad", "MAD", ".3f"),
                       ("passes", "gate", "")])
    for name, why in skipped.items():
        print(f"skipped {name}: {why}")
    save(a.out, {"repeats": a.repeats, "rows": rows, "skipped": skipped})


if __name__ == "__main__":
    main()
