"""Training throughput (images/s) of the style network with the VGG16 perceptual loss.

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
    ap.add_argument("--styles", type=int, default=8)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--precisions", default="fp32,bf16")
    ap.add_argument("--max-seconds", type=float, default=120)
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "training.json"))
    a = ap.parse_args()

    import torch
    from stylecast.nets.losses import content_loss, gram_matrix, style_loss
    from stylecast.nets.vgg import CONTENT_LAYER, VGGFeatures
    from stylecast.training.networks import TransformerNet, one_hot
    from stylecast.training.trainer import autocast

    from stylecast.sysinfo import cpu_has_amx


    torch.manual_seed(0)
    device = torch.device(a.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as the trainer does
    net = TransformerNet(a.styles).to(device)
    vgg = VGGFeatures().to(device)
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    with torch.no_grad():
        grams = {k: gram_matrix(v) for k, v in vgg(torch.rand(1, 3, 64, 64, device=device) * 255).items()}

    sync = synchronizer(a.device)

    def step(precision: str, size: int = a.size, batch: int = a.batch) -> float:
        x = torch.rand(batch, 3, size, size, device=device) * 255
        w = one_hot(torch.arange(batch) % a.styles, a.styles).to(device)
        sync()
        t0 = time.perf_counter()
        opt.zero_grad()
        with autocast(device, precision):
            y = net(x, w)
            fy = vgg(y)
            with torch.no_grad():
                fx = vgg(x)
        loss = content_loss(fy[CONTENT_LAYER], fx[CONTENT_LAYER]) + style_loss(fy, grams)
        loss.backward()
        opt.step()
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
        warm = max(step(precision) for _ in range(3 if device.type == "cuda" else 1))  # cuDNN autotuning
        times = [warm]
        if warm < a.max_seconds:
            times = []
            start = time.perf_counter()
            while len(times) < a.steps and time.perf_counter() - start < a.max_seconds:
                times.append(step(precision))
        med = statistics.median(times)
        rows.append({"device": str(device), "precision": precision, "size": a.size, "batch": a.batch, "step_s": med,
                     "images_per_s": a.batch / med, "timed_steps": len(times)})
    base = rows[0]["images_per_s"] or 1.0
    for r in rows:
        r["vs_first"] = r["images_per_s"] / base if r["images_per_s"] else None
    print(f"CPU has AMX: {cpu_has_amx()}; 64x64 probe step s: " + ", ".join(f"{p} {t:.3f}" for p, t in probe.items()))
    print_table(rows, [("precision", "precision", "s"), ("step_s", "step s", ".2f"),
                       ("images_per_s", "images/s", ".3f"), ("vs_first", f"vs {rows[0]['precision']}", ".2f"),
                       ("skipped", "note", "s")])
    save(a.out, {"device": str(device), "amx": cpu_has_amx(), "probe_64px_step_s": probe, "results": rows})


if __name__ == "__main__":
    main()
