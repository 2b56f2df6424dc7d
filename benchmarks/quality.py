"""Style-loss ratio of the shipped feed-forward model against per-image Gatys optimization.

    .venv/bin/python benchmarks/quality.py [--checkpoint checkpoints/starter8.pt] [--photos data/starter/eval]

Prints a table per style and writes benchmarks/results/quality.json. The goal is a ratio <= 1.5.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STYLE_ORDER = ["starry_night", "great_wave", "composition_viii", "cafe_terrace", "village_street",
               "langlois_bridge", "pere_tanguy", "shrine_in_snow"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoint", default=str(ROOT / "checkpoints" / "starter8.pt"))
    ap.add_argument("--photos", default=str(ROOT / "data" / "starter" / "eval"))
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--gatys-steps", type=int, default=200)
    ap.add_argument("--max-photos", type=int, default=2)
    ap.add_argument("--device", default="cpu", help="cpu or cuda: Gatys runs many times faster on a GPU")
    ap.add_argument("--style-size", type=int, default=None, help="style image size (default: the checkpoint's)")
    ap.add_argument("--reference", help="also: PSNR of --checkpoint's outputs against this network's (its teacher)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "quality.json"))
    a = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    import torch
    from stylecast.training.quality import fidelity, layer_ratios, measure, rows_as_dicts, summarize

    if not Path(a.photos).exists():
        from stylecast.training.data import gather_starter

        gather_starter(Path(a.photos).parent)
    names = torch.load(a.checkpoint, map_location="cpu", weights_only=False)["style_names"]
    styles = [ROOT / "styles" / f"{n}.jpg" for n in names]
    rows = measure(a.checkpoint, styles, a.photos, a.size, a.gatys_steps, a.max_photos, a.device, a.style_size)
    table = summarize(rows)
    print(f"{'style':>18} | {'photo':>7} | {'feed-fwd':>8} | {'Gatys':>7} | {'ratio':>5} | content ff / Gatys")
    for r in table:
        print(f"{r['style']:>18} | {r['style_photo']:7.3f} | {r['style_feedforward']:8.3f} | {r['style_gatys']:7.3f} | "
              f"{r['ratio']:5.2f} | {r['content_feedforward']:.3f} / {r['content_gatys']:.3f}")
    layers = layer_ratios(rows)
    print("style loss by VGG layer, mean over rows (feed-forward / Gatys = ratio):")
    for name, v in layers.items():
        print(f"{name:>18} | {v['feedforward']:.3f} / {v['gatys']:.3f} = {v['ratio']:.2f}")
    agreement = fidelity(a.checkpoint, a.reference, a.photos, a.size, a.max_photos) if a.reference else None
    for r in agreement or []:
        print(f"{r['style']:>18} | against {Path(a.reference).name}: {r['psnr_db']:.1f} dB PSNR, "
              f"{r['mean_abs_levels']:.2f} levels mean difference")
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"checkpoint": a.checkpoint, "size": a.size, "gatys_steps": a.gatys_steps,
                               "device": a.device, "style_size": a.style_size,
                               "per_style": table, "per_layer": layers,
                               "reference": a.reference, "against_reference": agreement,
                               "rows": rows_as_dicts(rows)}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
