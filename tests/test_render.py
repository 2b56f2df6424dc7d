"""The render loop and the iterative techniques built on it, on the real networks and photos."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from stylecast.nets.images import bundled_photos, load_rgb, to_tensor
from stylecast.nets.losses import content_loss, energy, gram_matrix, relative_mse, style_loss
from stylecast.nets.vgg import VGGFeatures
from stylecast.server.sidecar.networks import efficientnet_lite0
from stylecast.server.sidecar.optimization import methods
from stylecast.server.sidecar.optimization.render import Objective, State
from torch.nn import functional as F


@pytest.fixture(scope="module")
def model():
    return efficientnet_lite0()


@pytest.fixture(scope="module")
def vgg():
    return VGGFeatures()


def photo(name: str, size: int) -> torch.Tensor:
    img = Image.open(dict(bundled_photos())[name]).convert("RGB").resize((size, size))
    return to_tensor(img)[None]


def test_objective_algebra():
    a = Objective(lambda s: s.image.sum(), "a")
    b = Objective(lambda s: s.image.mean(), "b")
    s = State(torch.arange(4.0).view(1, 1, 2, 2))
    assert float((a + 2.0 * b - a)(s)) == pytest.approx(2 * 1.5)
    assert float((-a)(s)) == -6.0 and "a" in (a + b).name


@pytest.mark.parametrize("name", ["skimage_chelsea", "skimage_coffee"])
def test_fooling_flips_the_label_within_two_grey_levels(model, name):
    x = photo(name, 224)
    with torch.no_grad():
        original = int(model(x).argmax())
    target = 1  # goldfish
    r = methods.fooling_image(model, x, target, epsilon=2.0, steps=60)
    assert original != target and r.fooled, f"{name}: not fooled in {r.steps} steps"
    assert r.linf <= 2 / 255 + 1e-6 and 0 < r.l2 and r.steps <= 60
    with torch.no_grad():
        assert int(model(r.image).argmax()) == target


def test_class_visualization_raises_the_class_score(model):
    target = 130  # flamingo
    r = methods.class_visualization(model, target, size=96, steps=40, seed=1)
    with torch.no_grad():
        start = model(torch.full((1, 3, 96, 96), 127.5))[0, target]
        end = model(F.interpolate(r.image, size=96))[0, target]
    assert float(end) > float(start) + 5.0
    assert r.losses[-1] < r.losses[0]


def test_texture_synthesis_matches_grams(vgg):
    texture = to_tensor(load_rgb(__import__("pathlib").Path(__file__).parent.parent / "styles" / "starry_night.jpg",
                                 96))[None]
    r = methods.texture_synthesis(vgg, texture, size=64, steps=60, seed=0)
    assert r.losses[-1] < r.losses[0] / 5
    with torch.no_grad():
        g_t, g_r = gram_matrix(vgg(texture)["relu3_3"]), gram_matrix(vgg(r.image)["relu3_3"])
    assert relative_mse(g_r, g_t, energy(g_t)).item() < 0.5


def test_feature_inversion_and_gatys_and_deepdream(vgg):
    x = photo("skimage_astronaut", 64)
    inv = methods.feature_inversion(vgg, x, "relu2_2", steps=60)
    assert inv.losses[-1] < inv.losses[0] / 3
    style = photo("skimage_coffee", 64)
    g = methods.gatys_transfer(vgg, x, [style], [1.0], steps=30)
    assert g.losses[-1] < 0.7 * g.losses[0]
    with torch.no_grad():  # the style loss falls by half while the content stays close to the photo
        grams = {k: gram_matrix(v) for k, v in vgg(style).items()}
        start_style, end_style = style_loss(vgg(x), grams), style_loss(vgg(g.image), grams)
        content = content_loss(vgg(g.image)["relu2_2"], vgg(x)["relu2_2"])
    assert float(end_style) < 0.5 * float(start_style) and float(content) < 0.5
    dream = methods.deepdream(vgg, x, "relu3_3", steps=10, octaves=2).image
    with torch.no_grad():
        before, after = vgg(x)["relu3_3"].pow(2).mean(), vgg(dream)["relu3_3"].pow(2).mean()
    assert dream.shape == x.shape and float(after) > 1.5 * float(before)
    assert np.isfinite(dream.numpy()).all()


def test_a_stream_cancelled_between_steps_ends_with_cancelled_not_a_partial_result():
    """The render loop stops when ``progress`` returns False. In a served technique that happens when the
    stream is cancelled after the step's stop check (a race with a client going away or a server shutting
    down): the request must end as Cancelled (503 while shutting down), never as a partial result answered
    with 200."""
    from stylecast.server.errors import Cancelled
    from stylecast.server.sidecar.optimization.render import PixelImage, render
    from stylecast.server.sidecar.spec import Spec, SpecBackend

    def run(inputs, params, progress):
        r = render(PixelImage(torch.zeros(1, 3, 4, 4)), lambda s: s.image.square().mean(), 50, progress=progress)
        return {"image": r.image.numpy(), "steps": np.array([r.steps])}

    backend = SpecBackend(Spec("t", "a test technique", (), (), (), run, decoupled=True))
    sent = []

    def emit(msg) -> bool:  # the stream is cancelled right after the third step's message
        sent.append(msg)
        return len(sent) < 3

    with pytest.raises(Cancelled, match="stopped at step 3"):
        backend.infer({}, ["image", "steps"], {}, emit)
    assert len(sent) == 3
