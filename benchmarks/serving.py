"""The same ONNX style model in-process (ONNX Runtime) vs over gRPC through the embedded server.

    .venv/bin/python benchmarks/serving.py [--model starter8] [--repeats 15]

Interleaves the two paths in one process (the machines are shared and noisy), prints medians and
ratios, and writes benchmarks/results/serving.json with a description of the machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np

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

    from stylecast.sysinfo import machine

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
    print(f"{'size':>9} | {'in-process ORT ms':>17} | {'gRPC (uint8) ms':>15} | {'gRPC / in-process':>17}")
    for r in rows:
        print(f"{r['size']:>9} | {r['in_process_ms']:17.1f} | {r['grpc_ms']:15.1f} | {r['overhead_ratio']:17.3f}")
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": machine(), "model": a.model, "results": rows}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
