"""Your own style, measured: ``stylecast add-style`` with its defaults on paintings no shipped model saw.

    .venv/bin/python benchmarks/add_style.py [--model starter8 --model starter8_fast] [--painting FILE ...]

For each model and painting: the time of the default add-style on this machine (training and export, on a
copy of the repository, so model_repository/ is left alone), then on the held-out photos the new style's
ratio (the EfficientNet-Lite0 Gram distance to the painting over the photo's, as benchmarks/quality.py) and
content kept, the largest difference of every old style between the old and the new version (levels), and
the new style's droplets (photos whose strongest droplet inside the picture passes evaluation.droplets.VISIBLE,
and the mean peak).
Prints a table, writes benchmarks/results/add_style.json and, with --gallery, a labelled picture: each
painting, then the new style on held-out photos.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from report import print_table, save

ROOT = Path(__file__).resolve().parent.parent
PAINTINGS = sorted((ROOT / "benchmarks" / "paintings").glob("*.jpg"))


def run_one(model: str, painting: Path, a: argparse.Namespace, work: Path) -> tuple[dict, Path]:
    from PIL import Image
    from stylecast.evaluation.droplets import droplets
    from stylecast.evaluation.droplets import summarize as droplet_summary
    from stylecast.evaluation.quality import measure, summarize
    from stylecast.export.onnx_export import model_versions
    from stylecast.export.styles import add_style, shared_styles_difference
    from stylecast.nets.images import list_images

    repo = work / model / "model_repository"
    shutil.copytree(ROOT / "model_repository" / model, repo / model)
    (repo.parent / "checkpoints").mkdir()
    shutil.copy(ROOT / "checkpoints" / f"{model}.pt", repo.parent / "checkpoints")
    settings = {k: v for k, v in (("image_size", a.image_size), ("batch_size", a.batch_size), ("lr", a.lr))
                if v is not None}
    t0 = time.perf_counter()
    change = add_style(painting, model, repo, painting.stem, a.steps, out=work / model / f"run-{painting.stem}",
                       progress=False, **settings)
    seconds = time.perf_counter() - t0
    styles = [ROOT / "styles" / f"{n}.jpg" for n in change.styles[:-1]] + [painting]
    s = summarize(measure(change.onnx, styles, a.photos, 256, a.max_photos, gatys_photos=0,
                          only={painting.stem}))
    old = repo / model / str(model_versions(repo / model)[-2]) / "model.onnx"
    photos = [np.asarray(Image.open(p).convert("RGB").resize((256, 192))) for p in list_images(a.photos)[:2]]
    diff = shared_styles_difference(old, change.onnx, photos)
    drops = droplet_summary(droplets(change.onnx.parent / "weights.pt", a.photos, 256, a.max_photos,
                                     only={painting.stem}))[painting.stem]
    row = {"model": model, "painting": painting.stem, "steps": change.steps, "seconds": seconds,
           "ratio": s["mean_ratio"], "content_kept": s["content_kept"], "old_styles_max_levels": diff,
           "droplets": drops["photos_over"], "droplet_peak": drops["inside"], "photos": s["photos"]}
    kept = ROOT / "benchmarks" / "results" / "add_style" / f"{model}-{painting.stem}" / model  # for the gallery
    shutil.rmtree(kept, ignore_errors=True)
    shutil.copytree(change.onnx.parent.parent, kept, ignore=shutil.ignore_patterns("weights.pt", "1"))
    logging.info("%s + %s: %.0f s, style ratio %.3f, content kept %.0f%%, old styles within %d levels", model,
                 painting.stem, seconds, row["ratio"], 100 * row["content_kept"], diff)
    return row, kept / change.onnx.parent.name / "model.onnx"


def gallery(rows: list[tuple[dict, Path]], photos: list[Path], out: Path, tile: int = 160) -> None:
    """One row per (model, painting): the painting, then its new style on each photo."""
    import torch
    from stylecast.client.imaging import contact_sheet
    from stylecast.evaluation.quality import _square, load_stylizer, photo_tensor, style_weights
    from stylecast.nets.images import load_rgb, to_tensor

    sheet_rows, labels = [], []
    xs = [photo_tensor(p, 256) for p in photos]
    sheet_rows.append([None] + [_square(x, tile) for x in xs])
    labels.append("photo")
    for row, onnx in rows:
        net, names = load_stylizer(onnx)
        painting = ROOT / "benchmarks" / "paintings" / f"{row['painting']}.jpg"
        tiles = [_square(to_tensor(load_rgb(painting, tile * 2))[None], tile)]
        with torch.no_grad():
            tiles += [_square(net(x, style_weights(len(names) - 1, len(names))).clamp(0, 255), tile) for x in xs]
        sheet_rows.append(tiles)
        labels.append(f"{row['model']} + {row['painting']} (ratio {row['ratio']:.2f})")
    contact_sheet(sheet_rows, ["painting"] + [p.stem for p in photos], labels, tile).save(out)
    print(f"wrote {out}")


def gallery_from_results(out: Path, photos_dir: str) -> None:
    """The gallery of the models the last runs kept (benchmarks/results/add_style/), without training again."""
    from stylecast.nets.images import list_images

    rows = []
    for f in sorted((ROOT / "benchmarks" / "results").glob("add_style*.json")):
        for row in json.loads(f.read_text())["rows"]:
            folder = ROOT / "benchmarks" / "results" / "add_style" / f"{row['model']}-{row['painting']}" / row["model"]
            versions = sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit())
            rows.append((row, folder / str(versions[-1]) / "model.onnx"))
    photos = list_images(photos_dir)
    gallery(rows, photos[:: max(1, len(photos) // 5)][:5], out)


def main() -> None:
    from stylecast.training.config import ADD_STYLE_STEPS

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", action="append", help="model of model_repository/ (default: starter8)")
    ap.add_argument("--painting", action="append", type=Path, help="painting file (default: benchmarks/paintings)")
    ap.add_argument("--steps", type=int, default=ADD_STYLE_STEPS)
    ap.add_argument("--image-size", type=int)
    ap.add_argument("--batch-size", type=int)
    ap.add_argument("--lr", type=float)
    ap.add_argument("--photos", default=str(Path.home() / ".cache" / "stylecast" / "starter" / "eval"),
                    help="held-out photos (the starter set's evaluation split, gathered if missing)")
    ap.add_argument("--max-photos", type=int, default=12)
    ap.add_argument("--gallery", type=Path, help="also write the labelled gallery here (PNG)")
    ap.add_argument("--gallery-only", action="store_true",
                    help="only draw --gallery from the models the last runs kept in benchmarks/results/add_style/")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "add_style.json"))
    a = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if a.gallery_only:
        return gallery_from_results(a.gallery, a.photos)
    from stylecast.export.styles import default_photos
    from stylecast.nets.images import list_images

    default_photos()  # gathers the starter set (train and eval) once
    results = []
    with tempfile.TemporaryDirectory(prefix="stylecast-add-style-") as tmp:
        for model in a.model or ["starter8"]:
            for painting in a.painting or PAINTINGS:
                results.append(run_one(model, painting, a, Path(tmp) / f"{model}-{painting.stem}"))
                save(a.out, {"rows": [r for r, _ in results], "steps": a.steps})  # kept as it goes
    if a.gallery:
        photos = list_images(a.photos)
        gallery(results, photos[:: max(1, len(photos) // 5)][:5], a.gallery)
    rows = [r for r, _ in results]
    print_table(rows, [("model", "model", ""), ("painting", "painting", ""), ("steps", "steps", "d"),
                       ("seconds", "seconds", ".0f"), ("ratio", "style ratio", ".3f"),
                       ("content_kept", "content kept", ".0%"), ("old_styles_max_levels", "old styles, levels", "d"),
                       ("droplets", "droplets", "d"), ("droplet_peak", "droplet peak", ".1f")])
    save(a.out, {"rows": rows, "steps": a.steps})


if __name__ == "__main__":
    sys.exit(main())
