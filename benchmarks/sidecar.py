"""Every sidecar technique through the embedded server over gRPC: median latency, and (with --figures) the
last result of each as a PNG a person would want to look at.

    .venv/bin/python benchmarks/sidecar.py [--repeats 3] [--figures docs/sidecar]

Also times saliency against a plain autograd reference in the same process (same classifier, same input
size), so the serving cost of the attribution path is visible. Writes benchmarks/results/sidecar.json.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
from PIL import Image
from report import print_table, save

ROOT = Path(__file__).resolve().parent.parent


def photo(name: str, side: int) -> np.ndarray:
    from stylecast.nets.images import bundled_photos

    img = Image.open(dict(bundled_photos())[name]).convert("RGB")
    img.thumbnail((side, side), Image.Resampling.LANCZOS)
    return np.asarray(img)


def cases(c, cat: np.ndarray, astronaut: np.ndarray, starry: np.ndarray, wave: np.ndarray,
          gatys_steps: int = 300) -> dict:
    """name -> (settings shown in the table, a call returning the picture to save)."""
    return {
        "saliency": ("cat 451x300", lambda: c.explain("saliency", cat).overlay),
        "saliency_smoothgrad": ("cat, 16 samples", lambda: c.explain("saliency", cat, smooth_samples=16).overlay),
        "guided_backprop": ("cat 451x300", lambda: c.explain("guided_backprop", cat).overlay),
        "gradcam": ("cat 451x300", lambda: c.explain("gradcam", cat).overlay),
        "occlusion": ("patch 48, stride 16", lambda: c.explain("occlusion", cat).overlay),
        "fooling": ("cat -> goldfish, eps 2/255", lambda: c.fool(cat, 1, steps=100).image),
        "class_visualization": ("flamingo, 128 px, 100 steps", lambda: c.visualize_class(130, steps=100).image),
        "texture_synthesis": ("starry night, 128 px, 100 steps", lambda: c.texture(starry, steps=100).image),
        "deepdream": ("relu4_3, 3 octaves x 10 steps, lr 6, 256 px",
                      lambda: c.deepdream(astronaut, "relu4_3", octaves=3, steps=10, lr=6.0).image),
        "feature_inversion": ("relu3_3, 128 px, 200 steps",
                              lambda: c.invert(astronaut, "relu3_3", steps=200, size=128).image),
        "gatys": (f"256 px, 2 styles 0.7/0.3, EfficientNet-Lite0 loss (defaults), {gatys_steps} steps",
                  lambda: c.gatys(astronaut, [starry, wave], [0.7, 0.3], steps=gatys_steps, size=256).image),
        "gatys_vgg16": (f"256 px, 2 styles 0.7/0.3, VGG16 loss, style weight 20, {gatys_steps} steps",
                        lambda: c.gatys(astronaut, [starry, wave], [0.7, 0.3], steps=gatys_steps, size=256,
                                        style_size=256, style_weight=20.0, loss_network="vgg16").image),
        "knn": ("k=8 over the gallery", lambda: c.neighbours(cat, 8).picture),
        "embedding_pca": ("gallery", lambda: c.embedding("pca").picture),
        "embedding_tsne": ("gallery (cached after the first call)", lambda: c.embedding("tsne").picture),
        "max_activating_patches": ("relu4_3 unit 17, k=16", lambda: c.patches("relu4_3", 17, k=16).picture),
        "filters": ("VGG16 conv1_1", lambda: c.filters("vgg16", scale=6)),
        "guided_backprop_neuron": ("relu4_3 unit 17 at its most active position, cat",
                                   lambda: c.explain_neuron(cat, "relu4_3", 17).overlay),
        "feature_visualization": ("relu4_3 unit 17, 224 px, 100 steps",
                                  lambda: c.visualize_feature("relu4_3", 17, steps=100).image),
        "segmentation": ("cat, Grad-CAM seeds GrabCut", lambda: c.segment(cat).overlay),
        "texture_by_layer": ("Starry Night, VGG16, relu1_1 / 2_1 / 3_1 / 4_1 alone, then all four; 128 px, "
                             "150 steps each", lambda: np.concatenate(
                                 [c.texture(starry, layers=layers, loss_network="vgg16", steps=150).image
                                  for layers in ("relu1_1", "relu2_1", "relu3_1", "relu4_1",
                                                 "relu1_1,relu2_1,relu3_1,relu4_1")], axis=1)),
    }


def units_beyond_the_gallery(c, layer: str, channels: list[int], steps: int) -> list[dict]:
    """For each unit: the top gallery score (max_activating_patches) and the activation of its feature
    visualization (the same quantity: the channel's maximum over positions at 224 px)."""
    rows = []
    for ch in channels:
        top = float(c.patches(layer, ch, k=1).values.max())
        viz = float(c.visualize_feature(layer, ch, steps=steps).extra["activation"])
        rows.append({"layer": layer, "channel": ch, "gallery_top": top, "visualization": viz, "beyond": viz > top})
        print(f"{layer}:{ch}: gallery top {top:.1f}, feature visualization {viz:.1f}")
    return rows


def autograd_saliency(cat: np.ndarray):
    """The plain reference: resize, forward, backward, max |grad| over channels, in this process."""
    import torch
    from stylecast.server.sidecar.networks import load_classifier
    from torch.nn import functional as F

    model = load_classifier()

    def run() -> None:
        x = torch.from_numpy(cat.copy()).permute(2, 0, 1)[None].float()
        x = F.interpolate(x, size=(224, 224), mode="bilinear", antialias=True).requires_grad_(True)
        score = model(x)[0].max()
        (g,) = torch.autograd.grad(score, x)
        g.abs().amax(1)
    return run


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3, help="runs per technique (the first is a warm-up)")
    ap.add_argument("--only", help="comma-separated techniques")
    ap.add_argument("--figures", help="folder for one PNG per technique")
    ap.add_argument("--gatys-steps", type=int, default=300)
    ap.add_argument("--units", default="relu4_3:17,relu4_3:100,relu4_3:300,relu3_3:5,relu3_3:120",
                    help="LAYER:CHANNEL units whose feature visualization is compared with the gallery's top score "
                    "('' skips)")
    ap.add_argument("--unit-steps", type=int, default=100)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "sidecar.json"))
    a = ap.parse_args()

    from stylecast.client import Client
    from stylecast.nets.images import load_rgb
    from stylecast.server.app import Server, ServerOptions

    server = Server(ServerOptions(model_repository=None, port=0, metrics_port=None, sidecar=True))
    port = server.start()
    cat, astronaut = photo("skimage_chelsea", 451), photo("skimage_astronaut", 256)
    starry = np.asarray(load_rgb(ROOT / "styles" / "starry_night.jpg", 256))
    wave = np.asarray(load_rgb(ROOT / "styles" / "great_wave.jpg", 256))
    rows = []
    try:
        with Client(f"127.0.0.1:{port}", timeout=600) as c:
            todo = cases(c, cat, astronaut, starry, wave, a.gatys_steps)
            for name in a.only.split(",") if a.only else todo:
                settings, call = todo[name]
                times = []
                for _ in range(a.repeats):
                    t0 = time.perf_counter()
                    picture = call()
                    times.append(time.perf_counter() - t0)
                    if times[0] > 20:  # long optimizations: warm-up is a small share, one run is enough
                        break
                rows.append({"technique": name, "settings": settings, "first_s": times[0],
                             "median_s": statistics.median(times[1:] or times)})
                print(f"{name}: {rows[-1]['median_s']:.3f} s")
                if a.figures:
                    Path(a.figures).mkdir(parents=True, exist_ok=True)
                    Image.fromarray(picture).save(Path(a.figures) / f"{name}.png", optimize=True)
            units = []
            for layer, ch in (u.split(":") for u in a.units.split(",") if u):
                units += units_beyond_the_gallery(c, layer, [int(ch)], a.unit_steps)
            reference = autograd_saliency(cat)
            reference()
            local, served = [], []
            for _ in range(max(5, a.repeats)):
                t0 = time.perf_counter()
                reference()
                local.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                c.explain("saliency", cat)
                served.append(time.perf_counter() - t0)
    finally:
        server.stop()
    ratio = {"autograd_s": statistics.median(local), "served_s": statistics.median(served)}
    ratio["ratio"] = ratio["served_s"] / ratio["autograd_s"]
    print_table(rows, [("technique", "technique", "<24"), ("settings", "settings", "<40"),
                       ("first_s", "first s", ".3f"), ("median_s", "median s", ".3f")])
    print(f"saliency: plain autograd {ratio['autograd_s'] * 1e3:.1f} ms, served {ratio['served_s'] * 1e3:.1f} ms "
          f"({ratio['ratio']:.2f}x; the served path adds the map resize, the overlay and the transport)")
    if units:
        beyond = sum(u["beyond"] for u in units)
        print(f"feature visualization beyond the gallery's top score: {beyond} of {len(units)}")
    save(a.out, {"repeats": a.repeats, "techniques": rows, "saliency_vs_autograd": ratio, "units": units})


if __name__ == "__main__":
    main()
