"""The same ONNX style model in-process (ONNX Runtime) vs over gRPC through the embedded server.

    .venv/bin/python benchmarks/serving.py [--model starter8] [--repeats 15]

Interleaves the two paths in one process (the machines are shared and noisy), prints medians and
ratios, and writes benchmarks/results/serving.json with a description of the machine.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
from report import print_table, save

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="starter8")
    ap.add_argument("--repository", default=str(ROOT / "model_repository"))
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--sizes", default="256,512")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "serving.json"))
    a = ap.parse_args()

    import onnxruntime as ort
    from stylecast.client import Client
    from stylecast.server.app import Server, ServerOptions


    model_dir = Path(a.repository) / a.model
    version = max(int(p.name) for p in model_dir.iterdir() if p.name.isdigit())
    sess = ort.InferenceSession(str(model_dir / str(version) / "model.onnx"), providers=["CPUExecutionProvider"])
    server = Server(ServerOptions(model_repository=a.repository, port=0, metrics_port=None,
                                  model_control_mode="explicit", load_models=[a.model]))
    port = server.start()
    rows = []
    try:
        with Client(f"127.0.0.1:{port}") as c:
            names = c.styles(a.model)
            for size in (int(s) for s in a.sizes.split(",")):
                img = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
                feeds = {"image": img[None]}
                if len(names) > 1:
                    w = np.zeros((1, len(names)), np.float32)
                    w[0, 0] = 1
                    feeds["style_weights"] = w
                sess.run(None, feeds)
                c.stylize(img, names[0], model=a.model)  # warm-up both paths
                local, remote = [], []
                for _ in range(a.repeats):
                    t0 = time.perf_counter()
                    sess.run(None, feeds)
                    local.append(time.perf_counter() - t0)
                    t0 = time.perf_counter()
                    c.stylize(img, names[0], model=a.model)
                    remote.append(time.perf_counter() - t0)
                ml, mr = statistics.median(local), statistics.median(remote)
                rows.append({"size": f"{size}x{size}", "in_process_ms": ml * 1e3, "grpc_ms": mr * 1e3,
                             "overhead_ratio": mr / ml, "repeats": a.repeats})
    finally:
        server.stop()
    print_table(rows, [("size", "size", "s"), ("in_process_ms", "in-process ORT ms", ".1f"),
                       ("grpc_ms", "gRPC (uint8) ms", ".1f"), ("overhead_ratio", "gRPC / in-process", ".3f")])
    save(a.out, {"model": a.model, "results": rows})


if __name__ == "__main__":
    main()
