"""Real time on a CPU host: the shipped style models over gRPC at 256x256 and 512x512, and the int8 option.

    .venv/bin/python benchmarks/realtime.py [--models starter8,starter8_fast] [--int8] [--repeats 15]

Serves the models from a temporary copy of model_repository/ with the embedded server and times one
image per request over gRPC, interleaving the models so that load on a shared machine hits them alike.
With --int8 it also measures each model quantized statically to int8 (QDQ, ``export/quantize.py``,
calibrated on bundled photos that are not in the held-out set) and its difference from fp32 in output
levels on held-out photos. Prints a table and writes benchmarks/results/realtime.json.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from report import latest_onnx, print_table, save

ROOT = Path(__file__).resolve().parent.parent
SIZES = (256, 512)


def add_int8(repo: Path, model: str, n_styles: int, calibration: list[np.ndarray]) -> str:
    """A copy of ``model`` named ``<model>_int8`` whose graph is quantized."""
    from stylecast.export.quantize import quantize

    name = f"{model}_int8"
    shutil.copytree(repo / model, repo / name)
    cfg = repo / name / "config.pbtxt"
    cfg.write_text(cfg.read_text().replace(f'name: "{model}"', f'name: "{name}"'))
    onnx_path = latest_onnx(repo / name)
    quantize(onnx_path, onnx_path.with_name("int8.onnx"), calibration, n_styles)
    onnx_path.with_name("int8.onnx").replace(onnx_path)
    return name


def time_models(url: str, models: dict[str, int], repeats: int) -> dict[tuple[str, int], float]:
    """Median milliseconds per image (one request, batch 1), models interleaved per repeat."""
    import tritonclient.grpc as tc

    rng = np.random.default_rng(0)
    times: dict[tuple[str, int], list[float]] = {(m, s): [] for m in models for s in SIZES}
    with tc.InferenceServerClient(url) as c:
        for size in SIZES:
            x = rng.integers(0, 256, (1, size, size, 3), dtype=np.uint8)
            for r in range(repeats + 2):  # two warm-up rounds
                for model, n in models.items():
                    ins = [tc.InferInput("image", list(x.shape), "UINT8")]
                    ins[0].set_data_from_numpy(x)
                    if n > 1:
                        w = np.eye(n, dtype=np.float32)[r % n][None]
                        ins.append(tc.InferInput("style_weights", list(w.shape), "FP32"))
                        ins[1].set_data_from_numpy(w)
                    t = time.perf_counter()
                    c.infer(model, ins)
                    if r >= 2:
                        times[(model, size)].append((time.perf_counter() - t) * 1000)
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="starter8,starter8_fast")
    ap.add_argument("--repository", default=str(ROOT / "model_repository"))
    ap.add_argument("--int8", action="store_true", help="also each model quantized to int8")
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "realtime.json"))
    a = ap.parse_args()

    from stylecast.client.core import styles_of
    from stylecast.export.quantize import (
        calibration_photos,
        level_difference,
        parity_photos,
        photo_squares,
    )
    from stylecast.server.app import Server, ServerOptions
    from stylecast.server.config import read_config

    from stylecast.contract import PRECISION_PARAMETER

    source = Path(a.repository)
    names = [m for m in a.models.split(",") if (source / m).exists()]
    held_out = photo_squares(parity_photos())
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp)
        models: dict[str, int] = {}
        for m in names:
            shutil.copytree(source / m, repo / m)
            models[m] = len(styles_of(m, read_config(repo / m)))
        diffs: dict[str, dict] = {}
        if a.int8:
            calibration = photo_squares(calibration_photos())
            for m in [m for m in names if PRECISION_PARAMETER not in read_config(repo / m).parameters]:
                q = add_int8(repo, m, models[m], calibration)
                models[q] = models[m]
                diffs[q] = level_difference(latest_onnx(repo / m), latest_onnx(repo / q), held_out, models[m])
        srv = Server(ServerOptions(model_repository=repo, port=0, metrics_port=None, sidecar=False))
        srv.start()
        try:
            med = time_models(f"127.0.0.1:{srv.port}", models, a.repeats)
        finally:
            srv.stop()
    base = names[0]
    rows = [{"model": m, "ms_256": med[(m, 256)], "fps_256": 1000 / med[(m, 256)], "ms_512": med[(m, 512)],
             "vs_base_512": med[(m, 512)] / med[(base, 512)],
             "levels_mean": diffs.get(m, {}).get("mean"), "levels_p99": diffs.get(m, {}).get("p99")}
            for m in models]
    print(f"gRPC, one image per request, median of {a.repeats}; time ratio against {base} at 512x512; "
          "int8 rows: output levels off fp32 on 4 held-out photos")
    print_table(rows, [("model", "model", "<20"), ("ms_256", "256 ms", ".1f"), ("fps_256", "256 fps", ".1f"),
                       ("ms_512", "512 ms", ".1f"), ("vs_base_512", f"x {base}", ".2f"),
                       ("levels_mean", "levels mean", ".2f"), ("levels_p99", "levels p99", ".0f")])
    save(a.out, {"repeats": a.repeats, "rows": rows})


if __name__ == "__main__":
    main()
