"""Quality of a style network on held-out photos: style ratio, content kept, per-image optimization.

    .venv/bin/python benchmarks/quality.py [--checkpoint checkpoints/starter8.pt] [--gallery docs/starter8_quality.png]

Prints a table per style and writes benchmarks/results/quality.json. Style ratio: the Gram distance of
the stylized photo to its painting over the photo's own distance, in EfficientNet-Lite0 (lower is closer
to the painting; targets: mean <= 0.20, worst style <= 0.35). Content kept: share of pairs whose
stylized photo keeps the photo's top-1 class in its top 5 (target >= 50%). See stylecast.training.quality.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _fmt(v: float | None, spec: str = ".3f") -> str:
    return "-" if v is None else format(v, spec)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoint", default=str(ROOT / "checkpoints" / "starter8.pt"),
                    help="a checkpoint, or an exported graph in its model folder (e.g. an int8 .onnx)")
    ap.add_argument("--photos", default=str(ROOT / "data" / "starter" / "eval"))
    ap.add_argument("--size", type=int, default=256, help="long side of the photos")
    ap.add_argument("--max-photos", type=int, default=12)
    ap.add_argument("--gatys-photos", type=int, default=1, help="photos that also get per-image optimization")
    ap.add_argument("--gatys-steps", type=int, default=200)
    ap.add_argument("--gatys-network", default="efficientnet-lite0", choices=("efficientnet-lite0", "vgg16", "vgg19"),
                    help="loss network of the per-image optimization reference (the judge stays EfficientNet-Lite0)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--gallery", help="also write the labelled gallery here (PNG)")
    ap.add_argument("--gallery-photos", type=int, default=6)
    ap.add_argument("--reference", help="also: PSNR of --checkpoint's outputs against this network's (its teacher)")
    ap.add_argument("--compare", action="append", default=[], metavar="LABEL=CHECKPOINT",
                    help="gallery: also each photo through this network, e.g. fast=checkpoints/starter8_fast.pt")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "quality.json"))
    a = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    from stylecast.training.data import gather_starter, list_images
    from stylecast.training.quality import (
        JUDGE_LAYERS,
        fidelity,
        gallery,
        load_stylizer,
        measure,
        rows_as_dicts,
        summarize,
    )

    if not Path(a.photos).exists():
        gather_starter(Path(a.photos).parent)
    names = load_stylizer(a.checkpoint)[1]
    styles = [ROOT / "styles" / f"{n}.jpg" for n in names]
    t0 = time.perf_counter()
    rows = measure(a.checkpoint, styles, a.photos, a.size, a.max_photos, a.gatys_photos, a.gatys_steps, a.device,
                   a.gatys_network)
    summary = summarize(rows)
    judge = ", ".join(JUDGE_LAYERS)
    print(f"\n{summary['photos']} held-out photos at {a.size} px; judge: EfficientNet-Lite0 at {judge}")
    print(f"{'style':>18} | style ratio | content kept | per-image opt. ratio | ff / per-image")
    for s in summary["per_style"]:
        print(f"{s['style']:>18} | {s['ratio']:11.3f} | {s['content_kept']:12.0%} | {_fmt(s['gatys_ratio']):>20} | "
              f"{_fmt(s['vs_gatys'], '.2f'):>14}")
    print(f"{'mean':>18} | {summary['mean_ratio']:11.3f} | {summary['content_kept']:12.0%} |")
    print(f"worst style ratio {summary['worst_ratio']:.3f}; targets: mean <= 0.20, worst <= 0.35, content kept >= 50%")
    agreement = fidelity(a.checkpoint, a.reference, a.photos, a.size, 4) if a.reference else None
    for r in agreement or []:
        print(f"{r['style']:>18} | against {Path(a.reference).name}: {r['psnr_db']:.1f} dB PSNR, "
              f"{r['mean_abs_levels']:.2f} levels mean difference")
    if a.gallery:
        photos = list_images(a.photos)
        step = max(1, len(photos) // a.gallery_photos)
        gallery(a.checkpoint, styles, photos[::step][: a.gallery_photos], a.gallery, a.size,
                gatys_steps=a.gatys_steps, device=a.device, gatys_network=a.gatys_network,
                compare=dict(c.split("=", 1) for c in a.compare))
        print(f"wrote {a.gallery}")
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"checkpoint": a.checkpoint, "size": a.size, "gatys_steps": a.gatys_steps,
                               "gatys_network": a.gatys_network,
                               "device": a.device, "seconds": time.perf_counter() - t0, **summary,
                               "reference": a.reference, "against_reference": agreement,
                               "rows": rows_as_dicts(rows)}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
