"""Training throughput (images/s): the trainer's own step (``Trainer.train_step``) with the default recipe,
the 8 shipped paintings and the EfficientNet-Lite0 perceptual loss (``--loss-network vgg16`` for the other).

    .venv/bin/python benchmarks/training.py [--size 256] [--batch 4] [--precisions fp32,bf16]

Each configuration runs one warm-up step, then up to --steps timed steps (stopping early past
--max-seconds). Prints a table and writes benchmarks/results/training.json.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from report import print_table, save, synchronizer

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--loss-network", default="efficientnet-lite0", choices=("efficientnet-lite0", "vgg16"))
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--precisions", default="fp32,bf16")
    ap.add_argument("--max-seconds", type=float, default=120)
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "training.json"))
    a = ap.parse_args()

    import tempfile

    import torch
    from stylecast.nets.images import bundled_photos
    from stylecast.training.config import TrainConfig
    from stylecast.training.trainer import Trainer

    from stylecast.sysinfo import cpu_has_amx

    paintings = sorted(str(p) for p in (ROOT / "styles").glob("*.jpg"))
    photos = tempfile.mkdtemp(prefix="stylecast-bench-")
    for name, path in bundled_photos()[:8]:
        (Path(photos) / f"{name}{path.suffix}").symlink_to(path)
    trainers: dict[str, Trainer] = {}
    sync = synchronizer(a.device)

    def trainer(precision: str) -> Trainer:
        if precision not in trainers:
            trainers[precision] = Trainer(TrainConfig(
                styles=paintings, data=photos, out=tempfile.mkdtemp(prefix="stylecast-bench-"), device=a.device,
                precision=precision, loss_network=a.loss_network, image_size=a.size, batch_size=a.batch,
                content_layers=["block4", "block14"] if a.loss_network == "efficientnet-lite0" else []))
        return trainers[precision]

    def step(precision: str, size: int = a.size, batch: int = a.batch) -> float:
        t = trainer(precision)
        x = torch.rand(batch, 3, size, size) * 255
        sync()
        t0 = time.perf_counter()
        t.train_step(x)
        sync()
        return time.perf_counter() - t0

    # A cheap probe first: on CPUs without AMX, bf16 convolutions can be tens of times slower than fp32,
    # and a full-size bf16 step would then take many minutes.
    precisions = a.precisions.split(",")
    probe = {p: min(step(p, 64, 1) for _ in range(2)) for p in precisions}
    fastest = min(probe.values())
    rows = []
    for precision in precisions:
        if probe[precision] > 3 * fastest:
            rows.append({"precision": precision, "size": a.size, "batch": a.batch, "step_s": None,
                         "images_per_s": None, "skipped": f"64x64 probe {probe[precision] / fastest:.1f}x slower"})
            continue
        warm = max(step(precision) for _ in range(3 if a.device.startswith("cuda") else 1))  # cuDNN autotuning
        times = [warm]
        if warm < a.max_seconds:
            times = []
            start = time.perf_counter()
            while len(times) < a.steps and time.perf_counter() - start < a.max_seconds:
                times.append(step(precision))
        med = statistics.median(times)
        rows.append({"device": a.device, "loss_network": a.loss_network, "precision": precision, "size": a.size,
                     "batch": a.batch, "step_s": med,
                     "images_per_s": a.batch / med, "timed_steps": len(times)})
    base = rows[0]["images_per_s"] or 1.0
    for r in rows:
        r["vs_first"] = r["images_per_s"] / base if r["images_per_s"] else None
    print(f"CPU has AMX: {cpu_has_amx()}; 64x64 probe step s: " + ", ".join(f"{p} {t:.3f}" for p, t in probe.items()))
    print_table(rows, [("precision", "precision", "s"), ("step_s", "step s", ".2f"),
                       ("images_per_s", "images/s", ".3f"), ("vs_first", f"vs {rows[0]['precision']}", ".2f"),
                       ("skipped", "note", "s")])
    save(a.out, {"device": a.device, "loss_network": a.loss_network, "styles": len(paintings), "amx": cpu_has_amx(),
                 "probe_64px_step_s": probe, "results": rows})


if __name__ == "__main__":
    main()
