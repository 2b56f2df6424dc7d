"""The embedded server against in-process inference, on the shipped style model.

    .venv/bin/python benchmarks/serving.py [--model starter8] [--repeats 5] [--quick]

1. Latency per image size: in-process (the model's runtime, the same session type the server uses)
   vs gRPC with uint8 tensors vs gRPC with system shared memory.
2. Transport alone: an identity model on uint8 images, over gRPC, in-process cost ~0.
3. Throughput with 1, 4 and 8 concurrent clients, with dynamic batching on and off, against the best
   in-process batch throughput (batch 1, 4, 8).
Runs are interleaved in one process; prints tables and writes benchmarks/results/serving.json.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from report import print_table, save

ROOT = Path(__file__).resolve().parent.parent
SIZES = {"256": (256, 256), "512": (512, 512), "1080p": (1080, 1920)}


def build_repository(root: Path, model: str) -> None:
    """The model as shipped, a copy without dynamic batching, and a uint8 identity model."""
    import onnx
    from onnx import TensorProto, helper

    shutil.copytree(ROOT / "model_repository" / model, root / model)
    shutil.copytree(ROOT / "model_repository" / model, root / f"{model}_nobatch")
    cfg = root / f"{model}_nobatch" / "config.pbtxt"
    text = cfg.read_text().replace(f'name: "{model}"', f'name: "{model}_nobatch"')
    start = text.index("dynamic_batching")
    cfg.write_text(text[:start] + text[text.index("}", start) + 1:])
    i = helper.make_tensor_value_info("image", TensorProto.UINT8, ["b", "h", "w", 3])
    o = helper.make_tensor_value_info("stylized", TensorProto.UINT8, ["b", "h", "w", 3])
    m = helper.make_model(helper.make_graph([helper.make_node("Identity", ["image"], ["stylized"])], "id", [i], [o]),
                          opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    (root / "identity" / "1").mkdir(parents=True)
    onnx.save(m, str(root / "identity" / "1" / "model.onnx"))
    (root / "identity" / "config.pbtxt").write_text(
        'name: "identity"\nplatform: "onnxruntime_onnx"\nmax_batch_size: 8\n')


def inputs(x: np.ndarray, w: np.ndarray | None):
    import tritonclient.grpc as tc

    ins = [tc.InferInput("image", list(x.shape), "UINT8")]
    ins[0].set_data_from_numpy(x)
    if w is not None:
        ins.append(tc.InferInput("style_weights", list(w.shape), "FP32"))
        ins[1].set_data_from_numpy(w)
    return ins


class ShmPath:
    """Input and output images in system shared memory: only the small request crosses the socket."""

    def __init__(self, client, x: np.ndarray, tag: str) -> None:
        import tritonclient.utils.shared_memory as shm

        self.c, self.nbytes, self.shm = client, x.nbytes, shm
        self.ih = shm.create_shared_memory_region(f"in{tag}", f"/bench_in{tag}", x.nbytes)
        self.oh = shm.create_shared_memory_region(f"out{tag}", f"/bench_out{tag}", x.nbytes)
        shm.set_shared_memory_region(self.ih, [x])
        client.register_system_shared_memory(f"in{tag}", f"/bench_in{tag}", x.nbytes)
        client.register_system_shared_memory(f"out{tag}", f"/bench_out{tag}", x.nbytes)
        self.tag, self.shape = tag, x.shape

    def infer(self, model: str, w: np.ndarray) -> np.ndarray:
        import tritonclient.grpc as tc

        ins = inputs(np.zeros((1, 1, 1, 3), np.uint8), w)
        ins[0] = tc.InferInput("image", list(self.shape), "UINT8")
        ins[0].set_shared_memory(f"in{self.tag}", self.nbytes)
        out = tc.InferRequestedOutput("stylized")
        out.set_shared_memory(f"out{self.tag}", self.nbytes)
        self.c.infer(model, ins, outputs=[out])
        return self.shm.get_contents_as_numpy(self.oh, np.uint8, list(self.shape))

    def close(self) -> None:
        self.c.unregister_system_shared_memory(f"in{self.tag}")
        self.c.unregister_system_shared_memory(f"out{self.tag}")
        self.shm.destroy_shared_memory_region(self.ih)
        self.shm.destroy_shared_memory_region(self.oh)


def timed(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def latency(c, backend, model: str, w: np.ndarray, sizes: list[str], repeats: int) -> list[dict]:
    rows = []
    for size in sizes:
        h, wd = SIZES[size]
        x = np.random.default_rng(0).integers(0, 256, (1, h, wd, 3), dtype=np.uint8)
        feeds = {"image": x, "style_weights": w}
        shm = ShmPath(c, x, size)
        paths = {"in_process": lambda feeds=feeds: backend.infer(feeds, ["stylized"], {}),
                 "grpc": lambda x=x: c.infer(model, inputs(x, w)).as_numpy("stylized"),
                 "grpc_shm": lambda shm=shm: shm.infer(model, w),
                 "transport": lambda x=x: c.infer("identity", inputs(x, None)).as_numpy("stylized")}
        for fn in paths.values():
            fn()
        n = repeats if size != "1080p" else max(2, repeats // 2)
        times: dict[str, list[float]] = {k: [] for k in paths}
        for _ in range(n):
            for k, fn in paths.items():
                times[k] += timed(fn, 1)
        shm.close()
        med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
        rows.append({"size": size, "in_process_ms": med["in_process"], "grpc_ms": med["grpc"],
                     "grpc_shm_ms": med["grpc_shm"], "transport_ms": med["transport"],
                     "grpc_ratio": med["grpc"] / med["in_process"], "shm_ratio": med["grpc_shm"] / med["in_process"]})
    return rows


def throughput(url: str, backend, model: str, w: np.ndarray, per_client: int) -> list[dict]:
    import tritonclient.grpc as tc

    x1 = np.random.default_rng(1).integers(0, 256, (1, 256, 256, 3), dtype=np.uint8)
    best = 0.0
    for b in (1, 4, 8):
        feeds = {"image": np.repeat(x1, b, 0), "style_weights": np.repeat(w, b, 0)}
        backend.infer(feeds, ["stylized"], {})
        t = statistics.median(timed(lambda feeds=feeds: backend.infer(feeds, ["stylized"], {}), 3))
        best = max(best, b / t)
    rows = []
    for name in (model, f"{model}_nobatch"):
        for clients in (1, 4, 8):
            def work(name: str = name) -> None:
                with tc.InferenceServerClient(url) as c:
                    for _ in range(per_client):
                        c.infer(name, inputs(x1, w))
            threads = [threading.Thread(target=work) for _ in range(clients)]
            t0 = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            ips = clients * per_client / (time.perf_counter() - t0)
            rows.append({"model": name, "clients": clients, "images_per_s": ips, "best_in_process": best,
                         "ratio": ips / best})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="starter8")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--sizes", default="256,512,1080p")
    ap.add_argument("--per-client", type=int, default=4, help="requests per client in the throughput runs")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "serving.json"))
    a = ap.parse_args()

    import tritonclient.grpc as tc
    from stylecast.server.app import Server, ServerOptions


    with tempfile.TemporaryDirectory() as tmp:
        build_repository(Path(tmp), a.model)
        server = Server(ServerOptions(model_repository=tmp, port=0, metrics_port=None))
        port = server.start()
        url = f"127.0.0.1:{port}"
        try:
            backend = server.repository.get(a.model, "").backend
            n = backend.config.input[1].dims[0]  # the style-weights input of a multi-style model
            w = np.zeros((1, n), np.float32)
            w[0, 0] = 1
            with tc.InferenceServerClient(url) as c:
                lat = latency(c, backend, a.model, w, a.sizes.split(","), a.repeats)
            thr = throughput(url, backend, a.model, w, a.per_client)
        finally:
            server.stop()
    print_table(lat, [("size", "size", "<6"), ("in_process_ms", "in-process ms", ".1f"), ("grpc_ms", "gRPC ms", ".1f"),
                      ("grpc_shm_ms", "gRPC+shm ms", ".1f"), ("transport_ms", "identity ms", ".1f"),
                      ("grpc_ratio", "gRPC/in-proc", ".3f"), ("shm_ratio", "shm/in-proc", ".3f")])
    print()
    print_table(thr, [("model", "model", "<18"), ("clients", "clients", "d"), ("images_per_s", "img/s (256px)", ".2f"),
                      ("best_in_process", "best in-proc", ".2f"), ("ratio", "ratio", ".3f")])
    save(a.out, {"model": a.model, "latency": lat, "throughput": thr})


if __name__ == "__main__":
    main()
