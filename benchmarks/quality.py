"""Quality of a style network on held-out photos, by two measures, each a table per style.

    .venv/bin/python benchmarks/quality.py [--checkpoint checkpoints/starter8.pt] [--gallery docs/starter8_quality.png]

- **The training loss** (stylecast.evaluation.quality). Style ratio: the Gram distance of the stylized photo to
  its painting over the photo's own distance, in EfficientNet-Lite0, the network the styles were trained
  with (lower is closer to the painting; targets: mean <= 0.20, worst style <= 0.35). Content kept: share of
  pairs whose stylized photo keeps the photo's top-1 class in its top 5 (target >= 50%). Nudged: the style
  ratio after two signed one-level steps down the judge's own gradient, the part of the ratio that invisible
  pixel changes can buy.
- **Independent** (stylecast.evaluation.independent): measures no training run optimized. HED-VGG16 Gram
  ratio in colour and grayscale, Lab colour distance, Canny edge F1 and SSIM against the photo, stamped spots
  and edge bands, beside a Reinhard colour transfer to each painting. ``--compare LABEL=CHECKPOINT`` adds a
  model to this table and to the gallery.

Both go to benchmarks/results/quality.json (``--out``).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
INDEPENDENT_TARGETS = ("targets (starter8): Gram <= 0.25, grayscale Gram <= 0.22 (no style > 0.35), no spot, "
                       "no band over 10 levels, edge F1 >= 0.70, SSIM >= 0.55")


def _fmt(v: float | None, spec: str = ".3f") -> str:
    return "-" if v is None else format(v, spec)


def _args() -> argparse.Namespace:
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
    ap.add_argument("--nudge-steps", type=int, default=2,
                    help="signed one-level steps of the nudged ratio (0: skip it)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--gallery", help="also write the labelled gallery here (PNG)")
    ap.add_argument("--gallery-photos", type=int, default=6)
    ap.add_argument("--reference", help="also: PSNR of --checkpoint's outputs against this network's (its teacher)")
    ap.add_argument("--compare", action="append", default=[], metavar="LABEL=CHECKPOINT",
                    help="also this network, in the gallery and the independent table "
                         "(e.g. fast=model_repository/starter8_fast/1/model.onnx)")
    ap.add_argument("--independent-photos", type=int, default=10, help="held-out photos of the independent measure")
    ap.add_argument("--independent-only", action="store_true", help="skip the training-loss measure")
    ap.add_argument("--no-independent", action="store_true", help="skip the independent measure")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "quality.json"))
    return ap.parse_args()


def main() -> None:
    a = _args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from stylecast.evaluation.quality import load_stylizer
    from stylecast.training.data import gather_starter

    if not Path(a.photos).exists():
        gather_starter(Path(a.photos).parent)
    names = load_stylizer(a.checkpoint)[1]
    styles = [ROOT / "styles" / f"{n}.jpg" for n in names]
    result: dict = {"checkpoint": a.checkpoint, "size": a.size, "device": a.device}
    if not a.independent_only:
        result.update(training_loss_measure(a, styles))
    if not a.no_independent:
        result["independent"] = independent_measure(a, styles)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")


def training_loss_measure(a: argparse.Namespace, styles: list[Path]) -> dict:
    """EfficientNet-Lite0's Gram ratio and content kept: the measure the training optimized."""
    from stylecast.evaluation.quality import JUDGE_LAYERS, fidelity, gallery, measure, rows_as_dicts, summarize
    from stylecast.nets.images import list_images

    t0 = time.perf_counter()
    rows = measure(a.checkpoint, styles, a.photos, a.size, a.max_photos, a.gatys_photos, a.gatys_steps, a.device,
                   a.gatys_network, nudge_steps=a.nudge_steps)
    summary = summarize(rows)
    judge = ", ".join(JUDGE_LAYERS)
    print(f"\n{summary['photos']} held-out photos at {a.size} px; judge (the training loss): EfficientNet-Lite0 "
          f"at {judge}")
    print(f"{'style':>18} | style ratio | nudged | content kept | per-image opt. ratio | ff / per-image")
    for s in summary["per_style"]:
        print(f"{s['style']:>18} | {s['ratio']:11.3f} | {_fmt(s['nudged_ratio']):>6} | {s['content_kept']:12.0%} | "
              f"{_fmt(s['gatys_ratio']):>20} | {_fmt(s['vs_gatys'], '.2f'):>14}")
    print(f"{'mean':>18} | {summary['mean_ratio']:11.3f} | {_fmt(summary['mean_nudged_ratio']):>6} | "
          f"{summary['content_kept']:12.0%} |")
    if a.nudge_steps:
        print(f"nudged: after {a.nudge_steps} signed one-level steps down the judge's gradient (no pixel moves more "
              f"than {a.nudge_steps} levels); a gap between models under ratio - nudged is one no viewer sees")
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
    return {"gatys_steps": a.gatys_steps, "gatys_network": a.gatys_network, "seconds": time.perf_counter() - t0,
            **summary, "reference": a.reference, "against_reference": agreement, "rows": rows_as_dicts(rows)}


def _label(path: str) -> str:
    """A model's label: the checkpoint's stem, or an exported graph's model folder."""
    p = Path(path)
    return p.parent.parent.name if p.suffix == ".onnx" else p.stem


def independent_measure(a: argparse.Namespace, styles: list[Path]) -> dict:
    """Measures no training run optimized, for --checkpoint, each --compare and the colour transfer."""
    from stylecast.evaluation.independent import BASELINE, as_dicts, evaluate, summarize

    models = {_label(a.checkpoint): a.checkpoint, **dict(c.split("=", 1) for c in a.compare)}
    t0 = time.perf_counter()
    rows = evaluate(models, styles, a.photos, a.size, a.independent_photos)
    summary = summarize(rows)
    n = len({r.photo for r in rows})
    print(f"\nindependent measure: {n} held-out photos at {a.size} px; HED-VGG16 at relu1_2..relu4_3; ratios are "
          "the output's distance to the painting over the photo's (lower is closer)")
    print(f"{'model':>16} {'style':>17} | Gram | gray   | colour | edge F1 | SSIM | spots (photos) | band, median")
    for model, m in summary.items():
        for style, s in m["per_style"].items():
            half = ""
            if model != BASELINE and s["gram_gray"] > summary[BASELINE]["per_style"][style]["gram_gray"] / 2:
                half = " *"
            print(f"{model:>16} {style:>17} | {s['gram']:.2f} | {s['gram_gray']:.2f}{half:2} | {s['colour']:6.2f} | "
                  f"{s['edge_f1']:7.2f} | {s['ssim']:.2f} | {s['spots']:5d} ({s['photos_with_spots']:2d})     | "
                  f"{s['band']['levels']:+5.1f} {s['band']['side']}")
        mean = m["mean"]
        print(f"{model:>16} {'mean':>17} | {mean['gram']:.2f} | {mean['gram_gray']:.2f}   | {mean['colour']:6.2f} | "
              f"{mean['edge_f1']:7.2f} | {mean['ssim']:.2f} | {m['spots']:5d}          | {m['worst_band']:5.1f} worst")
    print(f"{INDEPENDENT_TARGETS}; * grayscale Gram above half the colour transfer's")
    return {"photos": n, "seconds": time.perf_counter() - t0, "summary": summary, "rows": as_dicts(rows)}


if __name__ == "__main__":
    main()
