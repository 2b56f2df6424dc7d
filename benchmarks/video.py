"""End-to-end video FPS against the embedded server: frame sizes x frames in flight.

    .venv/bin/python benchmarks/video.py [--model starter8] [--frames 8]

Prints a table and writes benchmarks/results/video.json.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from report import print_table, save

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="starter8")
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--sizes", default="256x256,512x512,1280x720")
    ap.add_argument("--in-flight", default="1,4,8")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "video.json"))
    a = ap.parse_args()

    from stylecast.client import Client
    from stylecast.server.app import Server, ServerOptions


    server = Server(ServerOptions(model_repository=ROOT / "model_repository", port=0, metrics_port=None,
                                  model_control_mode="explicit", load_models=[a.model]))
    port = server.start()
    rows = []
    try:
        with Client(f"127.0.0.1:{port}") as c:
            style = c.styles(a.model)[0]
            for size in a.sizes.split(","):
                w, h = (int(v) for v in size.split("x"))
                rng = np.random.default_rng(0)
                frames = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(a.frames)]
                c.stylize(frames[0], style, model=a.model)  # warm-up
                for k in (int(v) for v in a.in_flight.split(",")):
                    for transport in ("calls", "stream"):
                        t0 = time.perf_counter()
                        n = sum(1 for _ in c.stylize_stream(frames, style, model=a.model, in_flight=k,
                                                            transport=transport))
                        dt = time.perf_counter() - t0
                        rows.append({"size": size, "in_flight": k, "transport": transport, "frames": n,
                                     "fps": n / dt})
    finally:
        server.stop()
    print_table(rows, [("size", "size", "s"), ("in_flight", "in flight", "d"), ("transport", "transport", "s"),
                       ("fps", "fps", ".2f")])
    save(a.out, {"model": a.model, "results": rows})


if __name__ == "__main__":
    main()
