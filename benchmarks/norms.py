"""Instance norm against batch norm in the fast style network, at an equal budget (Ulyanov et al. 2016).

    .venv/bin/python benchmarks/norms.py [--style styles/great_wave.jpg] [--steps 400]

Trains the same single-style network twice from the same seed, photos, crops and losses, once with each
normalization (``stylecast train --norm``), then judges both on held-out photos: the training loss's style
ratio and content kept (EfficientNet-Lite0), and the independent measure (HED-VGG16 Gram ratio, SSIM, edge F1).
Writes benchmarks/results/norms.json and a labelled picture (``--picture``).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NORMS = ("instance", "batch")


def train(norm: str, a: argparse.Namespace) -> tuple[Path, float, list[dict]]:
    from stylecast.training.trainer import TrainConfig, Trainer

    cfg = TrainConfig(styles=[a.style], data=a.data, out=str(Path(a.runs) / norm), norm=norm, steps=a.steps,
                      image_size=a.image_size, batch_size=a.batch_size, lr=a.lr, content_layers=["block4", "block14"],
                      content_weight=13.0, style_weight=10.0, checkpoint_every=a.steps, sample_every=0, seed=0)
    trainer = Trainer(cfg)
    t0 = time.perf_counter()
    history = trainer.fit(progress=False)
    return trainer.out / "weights.pt", time.perf_counter() - t0, history


def judge(weights: Path, a: argparse.Namespace) -> dict:
    from stylecast.evaluation.independent import evaluate
    from stylecast.evaluation.independent import summarize as independent
    from stylecast.evaluation.quality import measure, summarize

    q = summarize(measure(weights, [a.style], a.photos, a.size, a.max_photos, gatys_photos=0))
    ind = independent(evaluate({"net": weights}, [Path(a.style)], a.photos, a.size, a.max_photos, baseline=False))
    return {"style_ratio": q["mean_ratio"], "content_kept": q["content_kept"], **ind["net"]["mean"]}


def picture(weights: dict[str, Path], a: argparse.Namespace) -> None:
    """Photos in rows; the photo, then each normalization's result, labelled."""
    import numpy as np
    from PIL import Image, ImageDraw
    from stylecast.evaluation.quality import load_stylizer, photo_tensor
    from stylecast.nets.images import list_images

    nets = {k: load_stylizer(w)[0] for k, w in weights.items()}
    rows = []
    for p in list_images(a.photos)[: a.picture_photos]:
        x = photo_tensor(p, a.size)
        tiles = [x] + [nets[k](x, None) for k in weights]
        rows.append(np.concatenate([t[0].clamp(0, 255).byte().permute(1, 2, 0).numpy()[:, :, :] for t in tiles], 1))
    w = max(r.shape[1] for r in rows)
    img = Image.fromarray(np.concatenate([np.pad(r, ((0, 0), (0, w - r.shape[1]), (0, 0))) for r in rows], 0))
    head = Image.new("RGB", (img.width, 20), "white")
    draw = ImageDraw.Draw(head)
    for i, label in enumerate(["photo", *(f"{k} norm" for k in weights)]):
        draw.text((i * img.width // (len(weights) + 1) + 4, 4), label, fill="black")
    out = Image.new("RGB", (img.width, img.height + 20))
    out.paste(head, (0, 0))
    out.paste(img, (0, 20))
    out.save(a.picture)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--style", default=str(ROOT / "styles" / "great_wave.jpg"))
    ap.add_argument("--data", default=str(ROOT / "data" / "starter" / "train"))
    ap.add_argument("--photos", default=str(ROOT / "data" / "starter" / "eval"))
    ap.add_argument("--runs", default=str(ROOT / "runs" / "norms"))
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--image-size", type=int, default=192)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--size", type=int, default=256, help="long side of the held-out photos")
    ap.add_argument("--max-photos", type=int, default=10)
    ap.add_argument("--picture", default=str(ROOT / "docs" / "norms.png"))
    ap.add_argument("--picture-photos", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "norms.json"))
    a = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from stylecast.training.data import gather_starter

    if not Path(a.data).exists():
        gather_starter(Path(a.data).parent)
    results, weights = {}, {}
    for norm in NORMS:
        weights[norm], seconds, history = train(norm, a)
        last = history[-max(1, len(history) // 10):]  # the last tenth of the logged steps
        results[norm] = {"seconds": seconds, "final_style_loss": sum(h["style"] for h in last) / len(last),
                         "final_content_loss": sum(h["content"] for h in last) / len(last), **judge(weights[norm], a)}
    print(f"\n{Path(a.style).stem}: {a.steps} steps from scratch, {a.image_size} px crops, batch {a.batch_size}; "
          f"judged on {a.max_photos} held-out photos at {a.size} px")
    print(f"{'norm':>9} | train style loss | train content loss | style ratio | content kept | VGG Gram | SSIM | "
          "edge F1 | s")
    for norm, r in results.items():
        print(f"{norm:>9} | {r['final_style_loss']:16.3f} | {r['final_content_loss']:18.3f} | "
              f"{r['style_ratio']:11.3f} | {r['content_kept']:12.0%} | {r['gram']:8.3f} | {r['ssim']:.2f} | "
              f"{r['edge_f1']:7.2f} | {r['seconds']:.0f}")
    if a.picture:
        picture(weights, a)
        print(f"wrote {a.picture}")
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"style": a.style, "steps": a.steps, "image_size": a.image_size,
                               "batch_size": a.batch_size, "lr": a.lr, "results": results}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
