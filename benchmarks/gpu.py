"""The style network on a GPU: images/s at 512x512 for batch 1, 8 and 32, in each precision and mode,
with the output difference against fp32 (grey levels on the uint8 output).

    python benchmarks/gpu.py [--checkpoint checkpoints/starter8.pt] [--size 512] [--batches 1,8,32]

Modes: PyTorch eager fp32 (the reference), fp16 and bf16 autocast, each with channels_last, and with a
captured CUDA graph (static shapes, so one graph per batch size); with --compile, torch.compile (inductor,
max-autotune on CUDA: Triton kernels with instance norm fused into its neighbours, CUDA graphs) in fp16
(bf16 on the CPU); ONNX Runtime's CUDA provider when onnxruntime-gpu is installed. Needs only torch
(CUDA build) and this repository; `--device cpu` runs the same code on small sizes to check it. Prints a
table and writes benchmarks/results/gpu.json.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from report import print_table, save, synchronizer

ROOT = Path(__file__).resolve().parent.parent


def torch_modes(net, device: str, dtype_names: list[str]):
    """name -> function(x uint8 NHWC on device, w) -> uint8 NHWC; every mode uses the served graph."""
    import torch
    from stylecast.export.graph import ServingModel

    m = ServingModel(net).to(device).eval().to(memory_format=torch.channels_last)
    modes = {}
    for name in dtype_names:
        dtype = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}[name]

        def run(x, w, dtype=dtype):
            with torch.inference_mode(), torch.autocast(device, dtype=dtype or torch.float32,
                                                        enabled=dtype is not None):
                return m(x, w)
        modes[f"torch {name} channels_last"] = run
    return modes


def compiled_mode(net, device: str):
    """torch.compile of the served graph in half precision, channels_last, static shapes (one compile per
    batch size): max-autotune on CUDA, inductor's default on the CPU (the check run)."""
    import torch
    from stylecast.export.graph import ServingModel

    m = ServingModel(net).to(device).eval().to(memory_format=torch.channels_last)
    dtype = torch.float16 if device == "cuda" else torch.bfloat16
    fast = torch.compile(m, mode="max-autotune" if device == "cuda" else None, dynamic=False)

    def run(x, w):
        with torch.inference_mode(), torch.autocast(device, dtype=dtype):
            return fast(x, w)
    how = "fp16 compiled (max-autotune)" if device == "cuda" else "bf16 compiled (inductor)"
    return f"torch {how}", run


def cuda_graph(fn, x, w):
    """Capture ``fn`` for these static inputs; replaying copies new data into the same buffers."""
    import torch

    static_x, static_w = x.clone(), w.clone()
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):
            fn(static_x, static_w)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_out = fn(static_x, static_w)

    def replay(x, w):
        static_x.copy_(x)
        static_w.copy_(w)
        graph.replay()
        return static_out
    return replay


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoint", default=str(ROOT / "checkpoints" / "starter8.pt"))
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--batches", default="1,8,32")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--compile", action="store_true", help="also torch.compile (minutes of compiling per batch size)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "gpu.json"))
    a = ap.parse_args()

    import torch
    from stylecast.training.checkpoint import load_network

    net, styles = load_network(a.checkpoint)
    sync = synchronizer(a.device)
    precisions = ["fp32", "fp16", "bf16"] if a.device == "cuda" else ["fp32", "bf16"]
    modes = torch_modes(net, a.device, precisions)
    compiled = compiled_mode(net, a.device) if a.compile else None
    ort_cuda = onnxruntime_cuda_session(net) if a.device == "cuda" else None
    rows = []
    for b in (int(s) for s in a.batches.split(",")):
        g = torch.Generator().manual_seed(b)
        x = torch.randint(0, 256, (b, a.size, a.size, 3), generator=g, dtype=torch.uint8).to(a.device)
        w = torch.nn.functional.one_hot(torch.arange(b) % len(styles), len(styles)).float().to(a.device)
        runs = dict(modes)
        if a.device == "cuda":
            for name in list(modes):
                runs[name + " + CUDA graph"] = cuda_graph(modes[name], x, w)
        if compiled is not None:
            runs[compiled[0]] = compiled[1]
        if ort_cuda is not None:  # host inputs made once: ORT's own host-device copies are part of its time
            feeds = {"image": x.cpu().numpy(), "style_weights": w.cpu().numpy()}
            runs["onnxruntime CUDA fp32 (host copies)"] = (
                lambda x, w, feeds=feeds: torch.from_numpy(ort_cuda.run(None, feeds)[0]))
        reference = modes["torch fp32 channels_last"](x, w).cpu().numpy().astype(np.int16)
        for name, fn in runs.items():
            fn(x, w)
            sync()
            times = []
            for _ in range(a.repeats):
                t0 = time.perf_counter()
                out = fn(x, w)
                sync()
                times.append(time.perf_counter() - t0)
            diff = np.abs(out.cpu().numpy().astype(np.int16) - reference)
            t = statistics.median(times)
            rows.append({"batch": b, "mode": name, "ms": t * 1e3, "images_per_s": b / t,
                         "max_diff": int(diff.max()), "mean_diff": float(diff.mean())})
            print(f"batch {b} {name}: {b / t:.1f} images/s", flush=True)
    print_table(rows, [("batch", "batch", "d"), ("mode", "mode", "<40"), ("ms", "ms", ".2f"),
                       ("images_per_s", "images/s", ".1f"), ("max_diff", "max diff", "d"),
                       ("mean_diff", "mean diff", ".4f")])
    info = {"size": a.size, "device": torch.cuda.get_device_name() if a.device == "cuda" else "cpu"}
    save(a.out, {**info, "rows": rows})


def onnxruntime_cuda_session(net):
    """An ONNX Runtime CUDA session on the same network as the torch rows (None without onnxruntime-gpu)."""
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return None
    from stylecast.export.onnx_export import export_onnx

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "model.onnx"
        export_onnx(net, path)
        return ort.InferenceSession(str(path), providers=["CUDAExecutionProvider"])


if __name__ == "__main__":
    main()
