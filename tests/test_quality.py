"""The quality measure: style ratio in EfficientNet-Lite0, content kept, per-image optimization reference."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from stylecast.evaluation.quality import Judge, gallery, mean_distance, measure, summarize
from stylecast.nets.images import heldout_photos, load_rgb, to_tensor

from tests.images import copy_photos

ROOT = Path(__file__).resolve().parent.parent
CHECKPOINT = ROOT / "checkpoints" / "starter8.pt"
STYLE_NAMES = torch.load(CHECKPOINT, map_location="cpu", weights_only=False)["style_names"]
STYLES = [ROOT / "styles" / f"{n}.jpg" for n in STYLE_NAMES]


@pytest.fixture(scope="module")
def photo_dir(tmp_path_factory) -> Path:
    return copy_photos(heldout_photos()[:2], tmp_path_factory.mktemp("heldout"))


@pytest.fixture(scope="module")
def rows(photo_dir):
    return measure(CHECKPOINT, STYLES, photo_dir, size=96, max_photos=1, gatys_photos=1, gatys_steps=20)


@pytest.fixture(scope="module")
def judge():
    return Judge()


def test_the_style_ratio_measures_the_painting(judge, photo_dir):
    """A painting's mirror image is far closer to the painting than a photo is; the photo's ratio is 1."""
    from stylecast.training.data import load_painting

    starry = to_tensor(load_painting(STYLES[0], 144))[None]
    target = judge.painting(STYLES[0], 144)
    photo = to_tensor(load_rgb(next(photo_dir.iterdir()), 96))[None]
    d_photo = mean_distance(judge.distances(photo, target))
    assert mean_distance(judge.distances(starry.flip(3), target)) < 0.2 * d_photo


def test_network_and_optimization_move_every_style_toward_its_painting(rows):
    assert len(rows) == 8 and {r.style for r in rows} == set(STYLE_NAMES)
    for r in rows:
        assert r.ratio < 0.9, r  # the shipped network moves the photo toward each painting
        assert r.gatys_ratio is not None and r.gatys_ratio < 1.0, r  # so does per-image optimization
        assert set(r.layers) == {"stem", "block2", "block4", "block7", "block10"}
        assert r.photo_top1 >= 0 and len(r.output_top5) == 5 and r.kept == (r.photo_top1 in r.output_top5)


def test_summary_agrees_with_the_rows(rows):
    s = summarize(rows)
    assert s["mean_ratio"] == pytest.approx(np.mean([r.ratio for r in rows]))
    assert s["worst_ratio"] == pytest.approx(max(r.ratio for r in rows))
    assert s["content_kept"] == pytest.approx(np.mean([r.kept for r in rows]))
    by = {p["style"]: p for p in s["per_style"]}
    assert by[rows[0].style]["vs_gatys"] == pytest.approx(rows[0].vs_gatys)


def test_content_kept_holds_for_the_photo_itself(judge, photo_dir):
    x = to_tensor(load_rgb(next(photo_dir.iterdir()), 160))[None]
    assert judge.top(x, 1)[0] in judge.top(x, 5)


def test_labelled_gallery(photo_dir, tmp_path):
    from PIL import Image

    photos = sorted(photo_dir.iterdir())
    out = gallery(CHECKPOINT, STYLES, photos, tmp_path / "g.png", size=64, tile=48, gatys_steps=2)
    img = np.asarray(Image.open(out))
    head = 24  # the column-label band of contact_sheet at the default label size
    assert img.shape == (head + 48 * (1 + len(photos) + 1), 48 * 9, 3)
    assert img[:head].min() < 100  # labels are drawn
    assert img[head:head + 48, 48:].std() > 20  # the paintings over the columns


def test_fidelity_of_a_network_to_itself_is_exact_and_to_a_perturbed_copy_is_not(tmp_path, photo_dir):
    from stylecast.evaluation.quality import fidelity

    same = fidelity(CHECKPOINT, CHECKPOINT, photo_dir, size=64, max_photos=1)
    assert all(r["mean_abs_levels"] == 0 and r["psnr_db"] > 100 for r in same)
    state = torch.load(CHECKPOINT, map_location="cpu", weights_only=False)
    state["model"] = {k: v + 0.05 * torch.randn_like(v) if v.is_floating_point() else v
                      for k, v in state["model"].items()}
    torch.save(state, tmp_path / "noisy.pt")
    noisy = fidelity(tmp_path / "noisy.pt", CHECKPOINT, photo_dir, size=64, max_photos=1)
    assert all(r["mean_abs_levels"] > 0.5 and r["psnr_db"] < 60 for r in noisy)


def test_the_reference_optimization_takes_another_loss_network(judge, photo_dir):
    """--gatys-network vgg16: the per-image reference optimizes in VGG16; the judge still measures it."""
    from stylecast.evaluation.quality import optimize_photo

    x = to_tensor(load_rgb(next(photo_dir.iterdir()), 64))[None]
    target = judge.painting(STYLES[0], 96)
    y = optimize_photo(judge, x, STYLES[0], 96, steps=15, network="vgg16")
    assert mean_distance(judge.distances(y, target)) < mean_distance(judge.distances(x, target))


def test_an_exported_graph_measures_as_its_checkpoint_is_served(tiny_style_checkpoint, photo_dir, tmp_path):
    """The measure runs what the server answers: the checkpoint inside the serving graph equals its ONNX
    export through ONNX Runtime within the export's parity tolerance, and both differ from the bare network
    (whose border pixels the serving margin replaces)."""
    from stylecast.evaluation.quality import load_stylizer, photo_tensor, style_weights
    from stylecast.export.onnx_export import PARITY_MAX_LEVELS, export_to_repository
    from stylecast.training.checkpoint import load_network

    onnx_path, _ = export_to_repository(tiny_style_checkpoint, "tiny", tmp_path / "repo")
    served, names = load_stylizer(tiny_style_checkpoint)
    exported, onnx_names = load_stylizer(onnx_path)
    bare = load_network(tiny_style_checkpoint)[0].eval()
    assert onnx_names == names == ["red", "green", "blue"]
    x = photo_tensor(next(photo_dir.iterdir()), 64)
    w = style_weights(1, 3)
    with torch.no_grad():
        a, b, c = served(x, w), exported(x, w), bare(x, w).clamp(0, 255).round()
    assert (a - b).abs().max() <= PARITY_MAX_LEVELS
    assert (c - b).abs().mean() > 10 * max(float((a - b).abs().mean()), 0.01)


@pytest.mark.parametrize("model", ["starter8", "starter8_fast"])
def test_the_served_graph_is_the_shipped_checkpoint(model, photo_dir):
    """model_repository/ serves the weights in checkpoints/: each style of the committed graph answers what
    its checkpoint answers in the serving graph, within the export's parity (fp32) or int8 tolerance. A graph
    left from earlier weights is tens of levels off."""
    from stylecast.evaluation.quality import load_stylizer, photo_tensor, style_weights
    from stylecast.export.onnx_export import PARITY_MAX_LEVELS
    from stylecast.export.quantize import INT8_MEAN_LEVELS

    served, names = load_stylizer(ROOT / "checkpoints" / f"{model}.pt")
    graph, graph_names = load_stylizer(ROOT / "model_repository" / model / "1" / "model.onnx")
    assert graph_names == names
    x = photo_tensor(next(photo_dir.iterdir()), 128)
    for i, style in enumerate(names):
        with torch.no_grad():
            d = (served(x, style_weights(i, len(names))) - graph(x, style_weights(i, len(names)))).abs()
        if model == "starter8":
            assert d.max() <= PARITY_MAX_LEVELS, f"{style}: the served graph is {d.max():.0f} levels off"
        else:  # int8
            assert d.mean() <= INT8_MEAN_LEVELS, f"{style}: the int8 graph is {d.mean():.1f} levels off on average"


def _worst_edge_line(y: torch.Tensor) -> float:
    """How far the outermost 3 rows and columns of an image stray in brightness from the band just inside
    (levels): painted border lines score high; a photo's own edges score what photos do."""
    g = y[0].float().mean(0)
    inner = {"left": g[8:-8, 8:16].mean(), "right": g[8:-8, -16:-8].mean(),
             "top": g[8:16, 8:-8].mean(), "bottom": g[-16:-8, 8:-8].mean()}
    lines = [(g[8:-8, k].mean() - inner["left"]).abs() for k in range(3)]
    lines += [(g[8:-8, -1 - k].mean() - inner["right"]).abs() for k in range(3)]
    lines += [(g[k, 8:-8].mean() - inner["top"]).abs() for k in range(3)]
    lines += [(g[-1 - k, 8:-8].mean() - inner["bottom"]).abs() for k in range(3)]
    return float(max(lines))


def test_the_served_picture_has_no_painted_border_lines(photo_dir):
    """The shipped starter8 as served: its outer rows and columns stray from their neighbours no more than
    the photo's own do (mean over every style), while the bare network paints lines there."""
    from stylecast.evaluation.quality import load_stylizer, photo_tensor, style_weights
    from stylecast.training.checkpoint import load_network

    served, names = load_stylizer(CHECKPOINT)
    bare = load_network(CHECKPOINT)[0].eval()
    photos = sorted(photo_dir.iterdir())
    own = np.mean([_worst_edge_line(photo_tensor(p, 192)) for p in photos])
    out, raw = [], []
    for p in photos:
        x = photo_tensor(p, 192)
        for i in range(len(names)):
            with torch.no_grad():
                out.append(_worst_edge_line(served(x, style_weights(i, len(names)))))
                raw.append(_worst_edge_line(bare(x, style_weights(i, len(names))).clamp(0, 255).round()))
    assert np.mean(out) <= own, (np.mean(out), own)  # a 4-pixel margin scored 43 on these photos, which score 33
    # Trained through the margin, the bare network paints weaker lines than it did (step 26600: 45 against the
    # served 23; step 20900: above twice the served), but still far more than the served picture shows.
    assert np.mean(raw) > 1.5 * np.mean(out), (np.mean(raw), np.mean(out))


def test_a_painting_target_leaves_out_the_scans_frame():
    """starry_night's scan has a black frame shadow and a beige canvas edge along two sides; the Gram target
    is taken from inside them."""
    from stylecast.training.data import load_painting

    starry = STYLES[STYLE_NAMES.index("starry_night")]
    scan, target = (to_tensor(f(starry, 384))[None] for f in (load_rgb, load_painting))
    assert _worst_edge_line(scan) > 80 and _worst_edge_line(target) < 40


def test_a_droplet_is_painted_as_a_stamp_where_the_locator_finds_it(photo_dir):
    """A spike planted in most channels of the last residual block (a droplet) comes out of the served
    network as a round stamp; ``evaluation.droplets`` reports it inside the picture at the stamp, stronger
    than any ordinary position."""
    from stylecast.evaluation.droplets import network_droplets
    from stylecast.evaluation.quality import ServedNetwork, photo_tensor, style_weights
    from stylecast.nets.images import list_images
    from stylecast.nets.losses import DROPLET_THRESHOLD
    from stylecast.training.checkpoint import load_network

    net, names = load_network(CHECKPOINT)
    cell = (20, 14)  # row, column of the residual stage's map (1/4 of the padded input)

    def plant(module, args):
        f = args[0].clone()
        f[:, : f.shape[1] * 3 // 4, cell[0], cell[1]] += 10 * f.std((2, 3))[:, : f.shape[1] * 3 // 4]
        return (f, *args[1:])

    style = names.index("village_street")
    x = photo_tensor(list_images(photo_dir)[0], 128)
    served = ServedNetwork(net)
    with torch.no_grad():
        plain = served(x, style_weights(style, len(names)))
        hook = net.res[-1].b.norm.register_forward_pre_hook(plant)
        stamped = served(x, style_weights(style, len(names)))
        rows = network_droplets(net, names, photo_dir, 128, 1, {"village_street"})
        hook.remove()
    where = (cell[1] * 4 + 2 - 12, cell[0] * 4 + 2 - 12)  # the cell's centre in photo pixels (12 px margin)
    diff = (stamped - plain).abs().sum(1)[0]
    peak = divmod(int(diff.argmax()), diff.shape[1])
    assert abs(peak[1] - where[0]) <= 6 and abs(peak[0] - where[1]) <= 6, (peak, where)
    assert float(diff.max()) > 60, "the decoder paints the spike as a visible stamp"
    assert rows[0].inside > 2 * DROPLET_THRESHOLD and rows[0].at == where, rows


def test_a_two_level_nudge_buys_a_large_part_of_the_style_ratio_and_nothing_a_viewer_sees(judge, photo_dir):
    """The judge's resolution: two signed one-level steps down its own gradient move no pixel more than two
    levels and lower the training-loss ratio by a fifth or more (a third here); the independent measures
    (HED-VGG16 Gram, SSIM) hardly move."""
    from stylecast.evaluation.independent import Painting, VGGGrams, ssim
    from stylecast.evaluation.quality import STYLE_SCALE, load_stylizer, photo_tensor, style_weights

    net, names = load_stylizer(CHECKPOINT)
    i = names.index("starry_night")
    painting = judge.painting(STYLES[i], round(192 * STYLE_SCALE))
    x = photo_tensor(next(photo_dir.iterdir()), 192)
    with torch.no_grad():
        y = net(x, style_weights(i, len(names))).clamp(0, 255).round()
    nudged = judge.nudge(y, painting)
    assert (nudged - y).abs().max() <= 2
    d_photo = mean_distance(judge.distances(x, painting))
    ratio, nudged_ratio = (mean_distance(judge.distances(v, painting)) / d_photo for v in (y, nudged))
    assert nudged_ratio < 0.8 * ratio, (ratio, nudged_ratio)  # 0.238 -> 0.159 at this size
    vgg = VGGGrams()
    target = Painting(STYLES[i], 192, vgg).grams
    out, out_nudged, photo = (v[0].byte().permute(1, 2, 0).numpy() for v in (y, nudged, x))
    g, g_nudged = (VGGGrams.distance(vgg(v), target) for v in (out, out_nudged))
    # HED-VGG16's distance moves by under a quarter as much (0.247 -> 0.236)
    assert abs(g_nudged - g) / g < 0.25 * (1 - nudged_ratio / ratio), (g, g_nudged)
    assert abs(ssim(out_nudged, photo) - ssim(out, photo)) < 0.01
