"""Training from scratch on tiny real photos: the loss falls, resume is exact, export serves any size."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from stylecast.training.trainer import TrainConfig, Trainer

from tests.images import STYLES, copy_photos


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    from stylecast.nets.images import bundled_photos

    d = copy_photos(bundled_photos()[:6], tmp_path_factory.mktemp("photos"))
    (d / "corrupt.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    return d


def _cfg(photos: Path, out: Path, steps: int, **kw) -> TrainConfig:
    base = dict(styles=[str(STYLES / "starry_night.jpg"), str(STYLES / "great_wave.jpg")], data=str(photos),
                out=str(out), image_size=32, style_size=64, batch_size=2, steps=steps, width=0.25, lr=1e-2,
                precision="fp32", checkpoint_every=4, sample_every=0, log_every=1, seed=3)
    base.update(kw)
    return TrainConfig(**base)


def test_loss_decreases_and_corrupt_files_are_skipped(photos, tmp_path):
    """The loss on one fixed batch (every photo, both styles) falls by training on random crops."""
    from stylecast.training.data import resize_square

    t = Trainer(_cfg(photos, tmp_path, 40, sample_every=40, lr=2e-3))
    assert len(t.data) == 6  # the corrupt file was skipped with a warning
    x = torch.stack([resize_square(im, 32) for im in t.data.images])
    idx = torch.arange(len(x)) % 2
    with torch.no_grad():
        first = float(t.losses(x, idx)["total"])
    t.fit(progress=False)
    with torch.no_grad():
        last = float(t.losses(x, idx)["total"])
    assert last < 0.85 * first, (first, last)
    assert (tmp_path / "checkpoint.pt").exists() and (tmp_path / "losses.json").exists()
    from PIL import Image

    grid = Image.open(tmp_path / "samples" / "step000040.png")
    assert grid.size == (32 * 3, 32)  # the photo crop, then one tile per style


def test_resume_continues_exactly(photos, tmp_path):
    """Weights, losses and the cosine learning-rate decay continue as in a straight run."""
    sched = dict(lr_schedule="cosine", lr_decay_start=2, lr_final=0.1)
    straight = Trainer(_cfg(photos, tmp_path / "a", 8, **sched))
    straight.fit(progress=False)
    lrs = [h["lr"] for h in straight.history]
    assert lrs[:3] == [1e-2] * 3 and all(a > b for a, b in zip(lrs[2:], lrs[3:])), lrs
    assert lrs[-1] == pytest.approx(1e-2 * (0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * 5 / 6))))
    assert straight.opt.param_groups[1]["lr"] == pytest.approx(10 * lrs[-1])  # the CIN tables keep their scale
    first = Trainer(_cfg(photos, tmp_path / "b", 8, **sched))
    first.fit(steps=4, progress=False)  # stopped halfway, e.g. by the end of a session
    resumed = Trainer(_cfg(photos, tmp_path / "c", 8, **sched))
    resumed.resume(tmp_path / "b" / "checkpoint.pt")
    assert resumed.step == 4
    resumed.fit(progress=False)
    for (k, v), v2 in zip(straight.net.state_dict().items(), resumed.net.state_dict().values(), strict=True):
        torch.testing.assert_close(v, v2, rtol=0, atol=0, msg=k)
    assert [h["total"] for h in resumed.history] == [h["total"] for h in straight.history]


def test_time_limit_saves_and_a_second_fit_continues_the_same_stream(photos, tmp_path):
    """--time-limit stops cleanly with a checkpoint; fit() again sees the batches a straight run sees."""
    straight = Trainer(_cfg(photos, tmp_path / "a", 6))
    straight.fit(progress=False)
    limited = Trainer(_cfg(photos, tmp_path / "b", 6, time_limit=1e-9))
    limited.fit(progress=False)
    assert limited.step == 1
    assert torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=False)["step"] == 1
    limited.history[-1]["time"] = 1e6  # logged time adds up over fits; the limit counts from this fit() only
    limited.cfg.time_limit = 60.0
    limited.fit(progress=False)  # the prefetch thread had drawn batches ahead; they must not be skipped
    assert [h["total"] for h in limited.history] == [h["total"] for h in straight.history]


def test_export_parity_and_serving(photos, tmp_path):
    from stylecast.client import Client
    from stylecast.export.onnx_export import export_to_repository
    from stylecast.server.app import Server, ServerOptions

    t = Trainer(_cfg(photos, tmp_path / "run", 4))
    t.fit(progress=False)
    repo = tmp_path / "repo"
    path, report = export_to_repository(tmp_path / "run" / "weights.pt", "mini", repo)
    assert path == repo / "mini" / "1" / "model.onnx"
    assert all(r.max_abs <= 2 for r in report)
    path2, _ = export_to_repository(tmp_path / "run" / "weights.pt", "mini", repo)
    assert path2 == repo / "mini" / "2" / "model.onnx"  # re-export adds a version
    srv = Server(ServerOptions(model_repository=repo, port=0, metrics_port=None))
    port = srv.start()
    try:
        with Client(f"127.0.0.1:{port}") as c:
            assert c.styles("mini") == ["starry_night", "great_wave"]
            img = np.random.default_rng(0).integers(0, 256, (251, 333, 3), dtype=np.uint8)
            out = c.stylize(img, "great_wave")
            assert out.shape == img.shape
            # served output equals the PyTorch network on the same image (up to float rounding)
            from stylecast.export.graph import ServingModel

            with torch.no_grad():
                ref = ServingModel(t.net.eval())(torch.from_numpy(img)[None], torch.tensor([[0.0, 1.0]]))[0].numpy()
            assert np.abs(ref.astype(int) - out.astype(int)).max() <= 2
    finally:
        srv.stop()


def test_cli_train_resume_and_data_starter(tmp_path, photos):
    from stylecast.cli import main

    out = tmp_path / "cli"
    args = ["train", "--style", str(STYLES / "starry_night.jpg"), "--data", str(photos), "--out", str(out),
            "--image-size", "32", "--style-size", "64", "--batch-size", "1", "--width", "0.25",
            "--checkpoint-every", "2", "--sample-every", "2", "--precision", "fp32", "--quiet"]
    assert main(args + ["--steps", "2"]) == 0
    assert main(args + ["--steps", "4", "--resume", str(out / "checkpoint.pt")]) == 0
    state = torch.load(out / "checkpoint.pt", weights_only=False)
    assert state["step"] == 4 and state["n_styles"] == 1
    assert sorted(p.name for p in (out / "samples").iterdir()) == ["step000002.png", "step000004.png"]
    assert main(["data", "starter", str(tmp_path / "starter"), "--holdout", "3"]) == 0
    assert len(list((tmp_path / "starter" / "eval").iterdir())) == 3
    assert len(list((tmp_path / "starter" / "train").iterdir())) > 50


def test_vgg_weights_resolution_prefers_explicit_and_hub(tmp_path, monkeypatch):
    from stylecast.nets import vgg

    path, kind = vgg.resolve_weights()
    assert kind == "hed" and path == vgg.bundled_weights_path()
    # a torchvision file in the hub cache wins over the bundled weights
    feats = vgg.build_vgg16_features()
    hub = tmp_path / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    torch.save({f"features.{k}": v for k, v in feats.state_dict().items()}, hub / vgg.TORCHVISION_FILE)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    assert vgg.resolve_weights() == (hub / vgg.TORCHVISION_FILE, "torchvision")
    m = vgg.VGGFeatures(("relu1_2", "relu2_2"))
    assert m.weights_kind == "torchvision"
    with pytest.raises(FileNotFoundError):
        vgg.resolve_weights(tmp_path / "missing.pth")
    with pytest.raises(ValueError, match="relu4_3"):
        vgg.VGGFeatures(("relu5_1",), weights=vgg.bundled_weights_path())


def test_bundled_vgg_recognises_structure():
    """Gram statistics of the bundled VGG separate two different paintings far more than a photo's crops."""
    from stylecast.nets.images import load_rgb, to_tensor
    from stylecast.nets.losses import energy, gram_matrix, relative_mse
    from stylecast.nets.vgg import VGGFeatures

    v = VGGFeatures(("relu2_2", "relu3_3"))
    starry = to_tensor(load_rgb(STYLES / "starry_night.jpg", 128))[None]
    wave = to_tensor(load_rgb(STYLES / "great_wave.jpg", 128))[None]
    with torch.no_grad():
        gs = gram_matrix(v(starry)["relu3_3"])
        gs2 = gram_matrix(v(starry.flip(3))["relu3_3"])
        gw = gram_matrix(v(wave)["relu3_3"])
    assert relative_mse(gs, gw, energy(gw)).item() > 10 * relative_mse(gs, gs2, energy(gs2)).item()


def test_distillation_learns_the_teachers_outputs(photos, tmp_path):
    """--teacher: a quarter-width student with the fast layout (3 residual blocks, 3x3 edge convolutions)
    moves toward the shipped model's pixels, with no loss network at all; its file rebuilds that layout."""
    from stylecast.training.checkpoint import load_network

    teacher_path = Path(__file__).resolve().parent.parent / "checkpoints" / "starter8.pt"
    t = Trainer(_cfg(photos, tmp_path, 40, styles=[], teacher=str(teacher_path), batch_size=4,
                     residual_blocks=3, edge_kernel=3))
    assert t.loss_net is None and t.n_styles == 8 and t.cfg.names()[0] == "starry_night"
    hist = t.fit(progress=False)
    first = np.mean([h["distill"] for h in hist[:5]])
    last = np.mean([h["distill"] for h in hist[-5:]])
    assert last < 0.7 * first, (first, last)
    student, names = load_network(tmp_path / "weights.pt")
    assert names == load_network(teacher_path)[1]
    assert len(student.res) == 3 and student.out_conv.kernel_size == (3, 3) and student.width == 0.25
    x = torch.rand(1, 3, 32, 32) * 255
    w = torch.eye(8)[:1]
    with torch.no_grad():
        np.testing.assert_allclose(student(x, w).numpy(), t.net.cpu().eval()(x, w).numpy(), atol=1e-3)


def test_distillation_on_top_of_the_perceptual_losses(photos, tmp_path):
    """--teacher with the teacher's paintings: the perceptual losses plus the weighted MSE to the teacher."""
    teacher_path = Path(__file__).resolve().parent.parent / "checkpoints" / "starter8.pt"
    from stylecast.training.checkpoint import load_network

    names = load_network(teacher_path)[1]
    paintings = [str(STYLES / f"{n}.jpg") for n in names]
    t = Trainer(_cfg(photos, tmp_path, 2, styles=paintings, teacher=str(teacher_path), teacher_weight=1000.0))
    assert t.loss_net is not None and t.teacher is not None
    x, idx = torch.rand(2, 3, 32, 32) * 255, torch.tensor([0, 3])
    out = t.losses(x, idx)
    cfg = t.cfg
    expected = (cfg.content_weight * out["content"] + cfg.style_weight * out["style"] + cfg.tv_weight * out["tv"]
                + 1000.0 * out["distill"])
    assert torch.isclose(out["total"], expected) and out["distill"] > 0
    with pytest.raises(ValueError, match="teacher's, in its order"):
        Trainer(_cfg(photos, tmp_path, 1, styles=paintings[::-1], teacher=str(teacher_path)))


def test_teacher_with_a_different_style_count_is_refused(photos, tmp_path):
    teacher_path = Path(__file__).resolve().parent.parent / "checkpoints" / "starter8.pt"
    with pytest.raises(ValueError, match="8 styles"):
        Trainer(_cfg(photos, tmp_path, 1, teacher=str(teacher_path)))


def test_the_losses_see_what_the_server_answers(photos, tmp_path):
    """Each crop is stylized inside the serving margin and cropped back, so the losses judge the picture
    the served graph returns, not the bare network's (which is free to paint lines along the borders)."""
    from stylecast.export.graph import ServingModel

    t = Trainer(_cfg(photos, tmp_path, 1))
    image = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (1, 32, 32, 3), dtype=np.uint8))
    x, w = image.permute(0, 3, 1, 2).float(), torch.tensor([[0.0, 1.0]])
    with torch.no_grad():
        served = ServingModel(t.net.eval())(image, w).permute(0, 3, 1, 2).float()
        trained = t.served(t.net, x, w).clamp(0, 255).round()
        bare = t.net(x, w).clamp(0, 255).round()
    assert (trained - served).abs().max() <= 1
    assert (bare - served).abs().mean() > 10 * max(float((trained - served).abs().mean()), 0.01)
    with pytest.raises(ValueError, match="margin"):
        Trainer(_cfg(photos, tmp_path / "odd", 1, margin=3))


def test_the_upsampling_stage_equals_upsample_then_convolve():
    """The low-resolution form of each upsampling stage gives the numbers of the textbook form: nearest x2,
    reflection pad, 3x3 convolution, on odd sizes too, with the same gradients for the kernel."""
    from stylecast.training.networks import upsample_conv
    from torch.nn import functional as F

    torch.manual_seed(0)
    conv = torch.nn.Conv2d(6, 5, 3)
    x = torch.randn(2, 6, 7, 10)
    textbook = conv(F.pad(F.interpolate(x, scale_factor=2.0, mode="nearest"), [1, 1, 1, 1], mode="reflect"))
    fast = upsample_conv(x, conv)
    assert fast.shape == textbook.shape == (2, 5, 14, 20)
    assert torch.allclose(fast, textbook, atol=1e-5)
    g_fast, = torch.autograd.grad(fast.square().sum(), conv.weight)
    g_book, = torch.autograd.grad(textbook.square().sum(), conv.weight)
    assert torch.allclose(g_fast, g_book, rtol=1e-4, atol=1e-4)


def test_the_network_compiles_and_matches_eager():
    """torch.compile (inductor) takes the whole network, both upsampling stages included, and gives the
    eager numbers: the GPU benchmark and `stylecast train --compile` depend on it."""
    from stylecast.training.networks import TransformerNet

    torch.manual_seed(0)
    net = TransformerNet(n_styles=2, width=0.25).eval()
    x, w = torch.rand(1, 3, 32, 32) * 255, torch.tensor([[0.3, 0.7]])
    with torch.no_grad():
        eager = net(x, w)
        compiled = torch.compile(net, dynamic=False)(x, w)
    torch._dynamo.reset()
    assert torch.allclose(compiled, eager, atol=1e-2)


def test_a_batch_norm_network_trains_reloads_and_exports(photos, tmp_path):
    """--norm batch (the comparison of docs/training.md): batch norm layers with running statistics that
    training moves, a checkpoint that reloads as the same network, an ONNX graph within the parity tolerance;
    several styles keep conditional instance norm."""
    from stylecast.export.onnx_export import export_to_repository
    from stylecast.training.checkpoint import load_network
    from stylecast.training.networks import TransformerNet

    t = Trainer(_cfg(photos, tmp_path / "run", 4, styles=[str(STYLES / "great_wave.jpg")], norm="batch"))
    bns = [m for m in t.net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and not [m for m in t.net.modules() if isinstance(m, torch.nn.InstanceNorm2d)]
    t.fit(progress=False)
    assert float(bns[0].running_var.sub(1).abs().max()) > 1e-3, "training never moved the running statistics"
    net, _ = load_network(tmp_path / "run" / "weights.pt")
    x = torch.rand(1, 3, 32, 32) * 255
    with torch.no_grad():
        assert torch.equal(net(x), t.net.eval()(x))
    _, report = export_to_repository(tmp_path / "run" / "weights.pt", "bn", tmp_path / "repo")
    assert all(r.max_abs <= 2 for r in report)
    with pytest.raises(ValueError, match="single-style"):
        TransformerNet(2, norm="batch")


def test_train_options_are_the_config_fields():
    """`stylecast train`'s options are built from TrainConfig's fields: every field has one, defaults are the
    dataclass's, repeated options collect, LAYER=WEIGHT parses into a dict and a bad pair is refused."""
    import argparse
    from dataclasses import fields

    from stylecast.training.config import TrainConfig, from_arguments

    from stylecast.cli import build_parser

    parser = build_parser()
    a = parser.parse_args(["train", "--data", "photos"])
    assert from_arguments(a) == TrainConfig(styles=[], data="photos")
    a = parser.parse_args(["train", "--data", "d", "--style", "a.jpg", "--style", "b.jpg", "--name", "x",
                           "--content-layer", "block4", "--style-layer-weight", "block10=0.25", "--compile",
                           "--lr-schedule", "cosine", "--time-limit", "60", "--edge-kernel", "3",
                           "--content-weight-of", "x=2", "--content-weight-of", "b=0.5"])
    cfg = from_arguments(a)
    assert cfg.styles == ["a.jpg", "b.jpg"] and cfg.style_names == ["x"] and cfg.content_layers == ["block4"]
    assert cfg.style_layer_weights == {"block10": 0.25} and cfg.compile and cfg.lr_schedule == "cosine"
    assert cfg.time_limit == 60.0 and cfg.edge_kernel == 3 and cfg.content_weights == {"x": 2.0, "b": 0.5}
    sub = next(x for x in parser._actions if isinstance(x, argparse._SubParsersAction)).choices["train"]
    dests = {x.dest for x in sub._actions}
    assert {f.name for f in fields(TrainConfig)} <= dests
    assert all(x.help for x in sub._actions if x.dest in {f.name for f in fields(TrainConfig)})
    for bad in (["--style-layer-weight", "block10"], ["--content-weight-of", "x"], ["--edge-kernel", "4"],
                ["--lr", "fast"]):
        with pytest.raises(SystemExit):
            parser.parse_args(["train", "--data", "d", *bad])


def test_a_relearn_takes_the_networks_recipe_except_what_the_command_line_sets():
    """--relearn trains with the network's own losses, but an option given on the command line wins, even
    one given at its default value: --content-colour rgb over a luminance recipe."""
    from stylecast.training.config import from_arguments, given, with_recipe

    from stylecast.cli import build_parser

    recipe = {"content_colour": "luminance", "content_weight": 15.0, "droplet_weight": 2.0, "style_weight": 10.0}
    a = build_parser().parse_args(["train", "--data", "d", "--style", "p.jpg", "--relearn", "p",
                                   "--content-colour", "rgb", "--style-weight", "6", "--steps", "150"])
    assert given(a) >= {"content_colour", "style_weight", "steps", "data", "styles"}
    assert not given(a) & {"content_weight", "droplet_weight", "lr"}
    cfg = with_recipe(from_arguments(a), recipe, given(a))
    assert (cfg.content_colour, cfg.style_weight) == ("rgb", 6.0)  # the command line's
    assert (cfg.content_weight, cfg.droplet_weight, cfg.steps) == (15.0, 2.0, 150)  # the recipe's, then its own


def test_the_droplet_loss_prices_a_spike_inside_the_picture_and_not_in_the_margin():
    """A droplet (most channels spiking at one place, StyleGAN2's artifact of instance norm) stands out of
    the map of the channels' root-mean-square z-score, whatever the signs; inside the picture it is priced,
    in the served margin it is not, and ordinary features cost nothing."""
    from stylecast.nets.losses import DROPLET_THRESHOLD, droplet_loss, droplet_strength

    f = torch.from_numpy(np.random.default_rng(0).normal(size=(2, 128, 24, 24)).astype(np.float32))
    assert float(droplet_loss([f], margin=0.125)) == 0.0
    spiked = f.clone()
    spiked[0, :96, 12, 12] += 10.0  # inside
    spiked[1, :96, 1, 1] += 10.0  # in the 3-cell margin
    spiked[1, :48, 12, 12] -= 10.0  # inside, but half the channels down and half up: as strong a droplet
    spiked[1, 48:96, 12, 12] += 10.0
    s = droplet_strength(spiked)
    assert min(float(s[0, 12, 12]), float(s[1, 1, 1]), float(s[1, 12, 12])) > 2 * DROPLET_THRESHOLD
    s[0, 12, 12] = s[1, 1, 1] = s[1, 12, 12] = 0
    assert float(s.max()) < 1.5, "no other position looks like a droplet"
    peaks = droplet_strength(spiked)[:, 12, 12]
    expected = float(((peaks / DROPLET_THRESHOLD - 1) ** 2).mean())
    assert float(droplet_loss([spiked], margin=0.125)) == pytest.approx(expected, rel=1e-4)
    spiked[1, :, 12, 12] = f[1, :, 12, 12]  # the second sample keeps only its droplet in the margin
    only_inside = float(droplet_loss([spiked], margin=0.125))
    assert only_inside == pytest.approx(float((peaks[0] / DROPLET_THRESHOLD - 1) ** 2) / 2, rel=1e-3)
    assert float(droplet_loss([spiked], margin=0.0)) > only_inside  # without a margin both are priced


def test_training_prices_the_droplets_of_the_watched_norms(photos, tmp_path):
    """With --droplet-weight the loss reads the inputs of the watched norms (``droplet_norms``) in the served
    forward (margin left out), once per step."""
    from stylecast.nets.losses import droplet_loss
    from stylecast.training.networks import droplet_norms

    t = Trainer(_cfg(photos, tmp_path, 1, droplet_weight=5.0, margin=4))
    x = torch.from_numpy(np.random.default_rng(1).integers(0, 256, (2, 3, 32, 32))).float()
    x[0] = 0
    x[0, :, 14:18, 14:18] = 255  # one small light on black: every channel spikes there
    idx = torch.tensor([0, 1])
    seen: list[torch.Tensor] = []
    watched = droplet_norms(t.net)
    assert len(watched) == 8
    hooks = [n.register_forward_pre_hook(lambda m, a: seen.append(a[0])) for n in watched]
    with torch.no_grad():
        first = t.losses(x, idx)
        again = t.losses(x, idx)
    for h in hooks:
        h.remove()
    expected = float(droplet_loss(seen[:8], margin=4 / 40))
    assert expected > 0
    assert float(first["droplet"]) == pytest.approx(expected, rel=1e-5)
    assert float(again["droplet"]) == pytest.approx(expected, rel=1e-5), "maps of earlier forwards are not kept"
    plain = Trainer(_cfg(photos, tmp_path / "plain", 1, margin=4))
    plain.net.load_state_dict(t.net.state_dict())
    with torch.no_grad():
        base = plain.losses(x, idx)
    assert "droplet" not in base
    assert float(first["total"]) == pytest.approx(float(base["total"]) + 5.0 * expected, rel=1e-4)


def test_a_relearned_row_is_priced_for_its_droplets_too(photos, tmp_path):
    """--relearn (and add-style) replace the network the Trainer built: the droplet loss must watch the
    base network's norms, and a base trained with it passes the weight on in its recipe."""
    from stylecast.training.add_style import StyleAdder, recipe

    t = Trainer(_cfg(photos, tmp_path / "base", 1, droplet_weight=5.0, margin=4))
    t.fit(progress=False)
    assert recipe(tmp_path / "base" / "weights.pt")["droplet_weight"] == 5.0
    cfg = _cfg(photos, tmp_path / "row", 1, droplet_weight=5.0, margin=4,
               styles=[str(STYLES / "great_wave.jpg")])
    adder = StyleAdder(cfg, tmp_path / "base" / "weights.pt", relearn=True)
    x = torch.zeros(2, 3, 32, 32)
    x[:, :, 14:18, 14:18] = 255  # one small light on black: every channel spikes there
    with torch.no_grad():
        out = adder.losses(x, adder.draw_styles(2))
    assert float(out["droplet"]) > 0
