"""Figures for docs/: the loss curves of a training run and a gallery of a style model.

    .venv/bin/python docs/make_figures.py --run runs/starter8 --model starter8

The gallery runs the exported model from model_repository/ through the embedded server and the client,
exactly as users do: held-out photos x every style, plus a strip blending two styles from 0 to 1.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent


def _phase_starts(history: list[dict]) -> list[tuple[int, str]]:
    """(first step, label) of each recipe phase recorded in a merged history (records with a 'phase')."""
    starts, last = [], None
    for r in history:
        if r.get("phase") and r["phase"] != last:
            starts.append((r["step"], r["phase"]))
            last = r["phase"]
    return starts


def loss_curves(losses_json: Path, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    h = json.loads(losses_json.read_text())
    steps = [r["step"] for r in h]
    phases = _phase_starts(h)
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.9))
    for ax, key in zip(axes, ("content", "style", "tv"), strict=True):
        vals = np.array([r[key] for r in h])
        ax.plot(steps, vals, alpha=0.3, lw=0.8)
        k = max(1, len(vals) // 30)
        ax.plot(steps[k - 1:], np.convolve(vals, np.ones(k) / k, mode="valid"), lw=2)
        for i, (step, _) in enumerate(phases):
            if i:
                ax.axvline(step, color="grey", ls="--", lw=1)
            ax.text(step, ax.get_ylim()[1], f" {i + 1}", va="top", fontsize=8)
        ax.set_title(f"{key} loss (unweighted)")
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    # The phases are numbered on the axes and described below them: long labels would squeeze the plots.
    caption = "   ".join(f"{i + 1}: {phase}" + (f" (from step {step})" if i else "")
                         for i, (step, phase) in enumerate(phases))
    fig.text(0.01, 0.02, caption, fontsize=8)
    fig.tight_layout(rect=(0, 0.07 if phases else 0, 1, 1))
    fig.savefig(out, dpi=90)
    print(f"wrote {out}")


def gallery(model: str, photos: list[Path], out: Path, tile: int = 192, blend: tuple[str, str] | None = None) -> None:
    from stylecast.client import Client
    from stylecast.server.app import Server, ServerOptions

    server = Server(ServerOptions(model_repository=ROOT / "model_repository", port=0, metrics_port=None,
                                  model_control_mode="explicit", load_models=[model]))
    port = server.start()
    try:
        with Client(f"127.0.0.1:{port}") as c:
            names = c.styles(model)
            rows = []
            for p in photos:
                img = Image.open(p).convert("RGB")
                img.thumbnail((tile * 2, tile * 2))
                s = min(img.size)
                img = img.crop(((img.width - s) // 2, (img.height - s) // 2, (img.width + s) // 2,
                                (img.height + s) // 2)).resize((tile, tile))
                rows.append([img] + [c.stylize(img, n, model=model) for n in names])
            a, b = blend or (names[0], names[1])
            strip = [rows[0][0]] + [c.stylize(rows[0][0], {a: 1 - t, b: t}, model=model)
                                    for t in np.linspace(0, 1, len(names))]
            rows.append(strip)
    finally:
        server.stop()
    from stylecast.client.imaging import contact_sheet

    labels = [p.stem for p in photos] + [f"blend {a} -> {b}"]
    sheet = contact_sheet(rows, ["photo", *names], labels, tile)
    sheet.save(out)
    print(f"wrote {out}: columns = photo, {', '.join(names)}; last row blends {a} -> {b}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", default=str(ROOT / "runs" / "starter8"))
    ap.add_argument("--model", default="starter8")
    ap.add_argument("--photos", default=str(ROOT / "data" / "starter" / "eval"))
    ap.add_argument("--count", type=int, default=4)
    ap.add_argument("--losses", help="losses JSON to plot (default: RUN/losses.json)")
    a = ap.parse_args()
    losses = Path(a.losses) if a.losses else Path(a.run) / "losses.json"
    if losses.exists():
        loss_curves(losses, ROOT / "docs" / f"{a.model}_losses.png")
    from stylecast.nets.images import list_images

    gallery(a.model, list_images(a.photos)[:: max(1, len(list_images(a.photos)) // a.count)][: a.count],
            ROOT / "docs" / f"{a.model}_gallery.png")


if __name__ == "__main__":
    main()
