"""Soak: many clients for minutes against one embedded server, mixing stylize and techniques.

    .venv/bin/python benchmarks/soak.py [--clients 8] [--seconds 60] [--size 128]

The server runs in its own process (its RSS is measured there, by /proc), serving model_repository/
and the sidecar. Half the clients speak gRPC, half HTTP/REST. A gRPC client loops over a mix: stylize
(starter8), saliency, Grad-CAM, occlusion and a short DeepDream, with a deadline; an HTTP client over
stylize (tritonclient.http, binary tensors), saliency, a short DeepDream through ``generate`` and its
``generate_stream`` events. Every few requests each sends a malformed one (which must be refused with
INVALID_ARGUMENT / 400, never INTERNAL / 500). Prints errors by status, p50/p99 latency per kind and
the server's RSS at start and end; writes benchmarks/results/soak.json.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from report import print_table, save

ROOT = Path(__file__).resolve().parent.parent


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def start_server(port: int) -> subprocess.Popen:
    cmd = [str(Path(sys.executable).parent / "stylecast"), "serve", "--model-repository",
           str(ROOT / "model_repository"), "--port", str(port), "--http-port", str(port + 1), "--metrics-port", "-1"]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def client_loop(url: str, size: int, end: float, record, seed: int) -> None:
    import grpc
    from stylecast.client import Client, StylecastError
    from tritonclient.grpc import service_pb2 as pb
    from tritonclient.grpc import service_pb2_grpc

    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    kinds = {
        "stylize": lambda c: c.stylize(img, "starry_night", timeout=60),
        "saliency": lambda c: c.explain("saliency", img, timeout=60),
        "gradcam": lambda c: c.explain("gradcam", img, timeout=60),
        "occlusion": lambda c: c.explain("occlusion", img, patch=56, stride=56, timeout=60),
        "deepdream": lambda c: c.optimize("deepdream", {"image": img}, steps=3, octaves=1, timeout=60),
    }
    bad = pb.ModelInferRequest(model_name="starter8")
    bad.inputs.add(name="image", datatype="UINT8", shape=[1, 2**32, 2**32, 3])
    bad.raw_input_contents.append(b"")
    with Client(url) as c, grpc.insecure_channel(url) as ch:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(ch)
        n = 0
        while time.monotonic() < end:
            n += 1
            if n % 5 == 0:
                try:
                    stub.ModelInfer(bad, timeout=10)
                    record("malformed", 0.0, "OK (should have been refused)")
                except grpc.RpcError as e:
                    record("malformed", 0.0, e.code().name)
                continue
            kind = list(kinds)[int(rng.integers(len(kinds)))]
            t0 = time.perf_counter()
            try:
                kinds[kind](c)
                record(kind, time.perf_counter() - t0, "OK")
            except StylecastError as e:
                record(kind, time.perf_counter() - t0, e.status.name)


def http_loop(url: str, size: int, end: float, record, seed: int) -> None:
    """The same mix over HTTP/REST: binary infer, generate, generate_stream, and malformed JSON."""
    import json

    import httpx
    import tritonclient.http as httpclient

    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    dream = {"image": img[:64, :64].tolist(), "parameters": {"steps": 3, "octaves": 1}}
    bad = {"inputs": [{"name": "\ud800", "datatype": ["UINT8"], "shape": [2**64], "data": ["\ud800"]}]}

    def stylize(c, h) -> None:
        inputs = [httpclient.InferInput("image", [1, size, size, 3], "UINT8"),
                  httpclient.InferInput("style_weights", [1, 8], "FP32")]
        inputs[0].set_data_from_numpy(img[None])
        inputs[1].set_data_from_numpy(np.eye(8, dtype=np.float32)[:1])
        c.infer("starter8", inputs)

    def saliency(c, h) -> None:
        x = httpclient.InferInput("image", list(img.shape), "UINT8")
        x.set_data_from_numpy(img)
        c.infer("saliency", [x])

    def generate(c, h) -> None:
        h.post("/v2/models/deepdream/generate", json=dream).raise_for_status()

    def stream(c, h) -> None:
        with h.stream("POST", "/v2/models/deepdream/generate_stream", json=dream) as r:
            r.raise_for_status()
            events = [json.loads(x[6:]) for x in r.iter_lines() if x.startswith("data: ")]
        if "error" in events[-1]:
            raise RuntimeError(events[-1]["error"])

    kinds = {"http stylize": stylize, "http saliency": saliency, "http generate": generate, "http stream": stream}
    with httpclient.InferenceServerClient(url, network_timeout=60) as c, \
            httpx.Client(base_url=f"http://{url}", timeout=60) as h:
        n = 0
        while time.monotonic() < end:
            n += 1
            if n % 5 == 0:
                r = h.post("/v2/models/starter8/infer", content=json.dumps(bad),
                           headers={"Content-Type": "application/json"})
                record("http malformed", 0.0, "INVALID_ARGUMENT" if r.status_code == 400 else f"HTTP {r.status_code}")
                continue
            kind = list(kinds)[int(rng.integers(len(kinds)))]
            t0 = time.perf_counter()
            try:
                kinds[kind](c, h)
                record(kind, time.perf_counter() - t0, "OK")
            except Exception as e:  # noqa: BLE001 - counted by kind
                status = getattr(getattr(e, "response", None), "status_code", None) or type(e).__name__
                record(kind, time.perf_counter() - t0, f"HTTP {status}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--port", type=int, default=18531)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "soak.json"))
    a = ap.parse_args()
    from stylecast.client import Client

    server = start_server(a.port)
    url = f"127.0.0.1:{a.port}"
    try:
        with Client(url) as c:
            c.wait_ready(timeout=300)
        rss_start = rss_mb(server.pid)
        lock = threading.Lock()
        latencies: dict[str, list[float]] = defaultdict(list)
        statuses: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))

        def record(kind: str, seconds: float, status: str) -> None:
            with lock:
                statuses[kind][status] += 1
                if status == "OK":
                    latencies[kind].append(seconds)

        end = time.monotonic() + a.seconds
        http_url = f"127.0.0.1:{a.port + 1}"
        threads = [threading.Thread(target=http_loop, args=(http_url, a.size, end, record, i)) if i % 2 else
                   threading.Thread(target=client_loop, args=(url, a.size, end, record, i)) for i in range(a.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        rss_end = rss_mb(server.pid)
        server.terminate()
        t0 = time.perf_counter()
        server.wait(timeout=120)
        exit_s = time.perf_counter() - t0
    finally:
        if server.poll() is None:
            server.kill()
    rows = []
    for kind in sorted(statuses):
        lat = sorted(latencies[kind])
        errors = {k: v for k, v in statuses[kind].items() if k != "OK"}
        rows.append({"kind": kind, "ok": statuses[kind].get("OK", 0), "errors": sum(errors.values()),
                     "statuses": dict(statuses[kind]),
                     "p50_ms": 1000 * lat[len(lat) // 2] if lat else None,
                     "p99_ms": 1000 * lat[min(len(lat) - 1, int(0.99 * len(lat)))] if lat else None})
    print(f"{a.clients} clients x {a.seconds:.0f} s at {a.size}x{a.size}")
    print_table(rows, [("kind", "kind", ""), ("ok", "ok", "d"), ("errors", "errors", "d"),
                       ("p50_ms", "p50 ms", ".0f"), ("p99_ms", "p99 ms", ".0f")])
    internal = sum(r["statuses"].get("INTERNAL", 0) + r["statuses"].get("UNKNOWN", 0)
                   + r["statuses"].get("HTTP 500", 0) for r in rows)
    print(f"server RSS {rss_start:.0f} -> {rss_end:.0f} MB; INTERNAL, UNKNOWN or HTTP 500 answers: {internal}; "
          f"SIGTERM to exit {exit_s:.1f} s")
    save(a.out, {"clients": a.clients, "seconds": a.seconds, "size": a.size, "rows": rows,
                 "rss_start_mb": rss_start, "rss_end_mb": rss_end, "internal": internal, "exit_seconds": exit_s})


if __name__ == "__main__":
    main()
