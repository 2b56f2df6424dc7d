"""Loss networks behind one interface: named features with gradients, the chosen network is the one used
and logged, nothing leaks (no gradients into the frozen weights, no train mode), no downloads."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from stylecast.nets.perceptual import loss_network, training_layers

from tests.images import copy_photos

STYLES = Path(__file__).resolve().parent.parent / "styles"


@pytest.fixture()
def vgg19_file(tmp_path, monkeypatch):
    """torchvision's vgg19 file layout in $TORCH_HOME (random weights: only the loading path is tested)."""
    from stylecast.nets.vgg import TORCHVISION_FILES, build_vgg16_features

    hub = tmp_path / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    feats = build_vgg16_features("vgg19")
    torch.save({f"features.{k}": v for k, v in feats.state_dict().items()}, hub / TORCHVISION_FILES["vgg19"])
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    return hub / TORCHVISION_FILES["vgg19"]


@pytest.mark.parametrize("name", ["efficientnet-lite0", "vgg16", "vgg19"])
def test_named_features_with_gradients_and_frozen_weights(name, request):
    if name == "vgg19":
        request.getfixturevalue("vgg19_file")
    net = loss_network(name)
    assert set(net.layers) == set(training_layers(name)) and net.content_layer in net.layers
    x = (255 * torch.rand(1, 3, 64, 64)).requires_grad_(True)
    feats = net(x)
    assert list(feats) == [n for n in net.layers if n in feats] and set(feats) == set(net.layers)
    assert all(f.requires_grad for f in feats.values())
    sum(f.pow(2).mean() for f in feats.values()).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in net.parameters())
    net.train()  # a loss network never leaves eval mode (batch-norm statistics stay fixed)
    assert not any(m.training for m in net.modules())


def test_vgg19_needs_its_file_and_says_so(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="vgg19-dcbb9e9d.pth"):
        loss_network("vgg19")


def test_unknown_names_are_refused():
    with pytest.raises(ValueError, match="unknown loss network"):
        loss_network("resnet")
    with pytest.raises(ValueError, match="unknown efficientnet-lite0 layers"):
        loss_network("efficientnet-lite0", ("block99",))


def test_efficientnet_grams_tell_paintings_apart():
    """Two paintings differ far more in EfficientNet-Lite0 Gram statistics than a painting and its mirror."""
    from stylecast.nets.images import load_rgb, to_tensor
    from stylecast.nets.losses import energy, gram_matrix, relative_mse

    net = loss_network("efficientnet-lite0")
    starry, wave = (to_tensor(load_rgb(STYLES / f"{n}.jpg", 160))[None] for n in ("starry_night", "great_wave"))
    with torch.no_grad():
        for layer in net.style_layers:
            gs, gm, gw = (gram_matrix(net(x)[layer]) for x in (starry, starry.flip(3), wave))
            assert relative_mse(gs, gw, energy(gw)).item() > 5 * relative_mse(gs, gm, energy(gm)).item(), layer


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    from stylecast.nets.images import bundled_photos

    return copy_photos(bundled_photos()[:4], tmp_path_factory.mktemp("photos"))


def _trainer(photos: Path, out: Path, steps: int, **kw):
    from stylecast.training.trainer import TrainConfig, Trainer

    cfg = dict(styles=[str(STYLES / "starry_night.jpg")], data=str(photos), out=str(out), image_size=64,
               style_size=96, batch_size=2, steps=steps, width=0.25, lr=1e-2, precision="fp32",
               checkpoint_every=steps, sample_every=0, log_every=1, seed=1)
    cfg.update(kw)
    return Trainer(TrainConfig(**cfg))


@pytest.mark.parametrize("name", ["efficientnet-lite0", "vgg16"])
def test_the_chosen_network_is_used_logged_and_recorded(photos, tmp_path, caplog, name):
    with caplog.at_level(logging.INFO, logger="stylecast"):
        t = _trainer(photos, tmp_path, 1, loss_network=name)
    assert t.loss_net.name == name
    assert any(f"perceptual losses in {name}" in r.getMessage() for r in caplog.records)
    assert set(t.grams) == set(t.loss_net.style_layers)
    t.fit(progress=False)
    state = torch.load(tmp_path / "weights.pt", weights_only=False)
    assert state["loss_network"]["name"] == name and state["config"]["loss_network"] == name
    assert all(p.grad is None for p in t.loss_net.parameters()) and not t.loss_net.training


def test_short_training_lowers_the_efficientnet_style_loss(photos, tmp_path):
    t = _trainer(photos, tmp_path, 40, content_weight=4.0)  # style leads, so 40 steps show its fall
    assert t.loss_net.name == "efficientnet-lite0"  # the default
    hist = t.fit(progress=False)
    first, last = np.mean([h["style"] for h in hist[:5]]), np.mean([h["style"] for h in hist[-5:]])
    assert last < 0.9 * first, (first, last)  # 6.8 -> 5.6 over 40 steps here


def test_content_layers_are_the_ones_the_content_loss_reads(photos, tmp_path):
    """--content-layer: the content loss is the mean relative error over the named layers, so a deeper
    layer changes its value for the same output; the choice is recorded in the run's config."""
    from stylecast.nets.losses import content_loss

    t = _trainer(photos, tmp_path, 1, content_layers=["block4", "block10"])
    assert {"block4", "block10"} <= set(t.loss_net.layers)
    x = torch.rand(2, 3, 64, 64) * 255
    idx = torch.zeros(2, dtype=torch.long)
    with torch.no_grad():
        got = t.losses(x, idx)["content"]
        fy, fx = t.loss_net(t.served(t.net, x, None)), t.loss_net(x)
    expected = (content_loss(fy["block4"], fx["block4"]) + content_loss(fy["block10"], fx["block10"])) / 2
    assert torch.isclose(got, expected, rtol=1e-4)
    assert not torch.isclose(got, content_loss(fy["block2"], fx["block2"]), rtol=1e-2)
    t.fit(progress=False)
    state = torch.load(tmp_path / "weights.pt", weights_only=False)
    assert state["config"]["content_layers"] == ["block4", "block10"]


def test_a_styles_content_weight_scales_its_samples_alone(photos, tmp_path):
    """--content-weight-of: each sample's content error is multiplied by its style's weight, so a style with
    room to spare can keep more of the subject; an unknown style name is refused with the list."""
    from stylecast.nets.losses import content_loss

    styles = [str(STYLES / "starry_night.jpg"), str(STYLES / "great_wave.jpg")]
    t = _trainer(photos, tmp_path, 1, styles=styles, content_weights={"great_wave": 3.0})
    x = torch.rand(2, 3, 64, 64) * 255
    idx = torch.tensor([0, 1])
    with torch.no_grad():
        got = t.losses(x, idx)["content"]
        w = torch.eye(2)
        fy, fx = t.loss_net(t.served(t.net, x, w)), t.loss_net(x)
    layer = t.cfg.content_layers[0]
    each = [content_loss(fy[layer][i:i + 1], fx[layer][i:i + 1]) for i in range(2)]
    assert torch.isclose(got, (each[0] + 3.0 * each[1]) / 2, rtol=1e-4)
    assert not torch.isclose(got, (each[0] + each[1]) / 2, rtol=1e-2)
    with pytest.raises(ValueError, match="the styles are starry_night, great_wave"):
        _trainer(photos, tmp_path, 1, styles=styles, content_weights={"great-wave": 3.0})


def test_a_luminance_content_loss_reads_grey_images_and_leaves_colour_to_the_style(photos, tmp_path):
    """--content-colour luminance: the content loss compares the output's and the photo's grey versions, so a
    change of colour at the same luminance costs nothing there (the style loss alone prices the palette); the
    choice is recorded and a relearn or added style takes it from the network's recipe."""
    from stylecast.nets.losses import content_loss, luminance
    from stylecast.training.add_style import recipe

    t = _trainer(photos, tmp_path, 1, content_colour="luminance")
    x = torch.rand(2, 3, 64, 64) * 200 + 20
    idx = torch.zeros(2, dtype=torch.long)
    with torch.no_grad():
        got = t.losses(x, idx)["content"]
        y = t.served(t.net, x, None)
        grey = {n: content_loss(t.loss_net(luminance(y))[n], t.loss_net(luminance(x))[n]) for n in t.cfg.content_layers}
        rgb = {n: content_loss(t.loss_net(y)[n], t.loss_net(x)[n]) for n in t.cfg.content_layers}
    assert torch.isclose(got, sum(grey.values()) / len(grey), rtol=1e-4)
    assert not torch.isclose(got, sum(rgb.values()) / len(rgb), rtol=1e-2)
    shift = torch.tensor([0.587, -0.299, 0.0]).view(1, 3, 1, 1) * 30  # luma weights . shift = 0
    assert torch.allclose(luminance(x + shift), luminance(x), atol=1e-3)
    assert not torch.allclose(x + shift, x)
    t.fit(progress=False)
    assert recipe(tmp_path / "weights.pt")["content_colour"] == "luminance"
