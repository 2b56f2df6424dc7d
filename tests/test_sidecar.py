"""Attribution techniques on the real classifier and real photos, served by the real server."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from stylecast.client import Client, StylecastError

from tests.images import mass_inside


@pytest.mark.parametrize("technique", ["saliency", "guided_backprop", "gradcam", "occlusion"])
def test_maps_concentrate_on_the_object(sidecar_url, cat_on_grey, technique):
    with Client(sidecar_url) as c:
        r = c.explain(technique, cat_on_grey)
    assert "cat" in r.label, r.label  # tabby / tiger cat / Egyptian cat
    assert r.map.shape == cat_on_grey.shape[:2] and r.overlay.shape == cat_on_grey.shape
    inside = mass_inside(r.map)
    assert inside > 0.5, f"{technique}: only {inside:.2f} of the map inside a box of 25% of the image"


def test_smoothgrad_wrapper_and_target_parameter(sidecar_url, cat_on_grey):
    with Client(sidecar_url) as c:
        plain = c.explain("saliency", cat_on_grey)
        smooth = c.explain("saliency", cat_on_grey, smooth_samples=4, smooth_sigma=0.1)
        again = c.explain("saliency", cat_on_grey, smooth_samples=4, smooth_sigma=0.1)
        other = c.explain("gradcam", cat_on_grey, target=967)  # espresso
    assert mass_inside(smooth.map) > 0.5
    assert not np.allclose(plain.map, smooth.map)
    np.testing.assert_array_equal(smooth.map, again.map)  # seeded: repeatable on CPU
    assert other.class_index == 967 and other.label == "espresso" and other.probability < plain.probability


def test_parameters_are_validated_and_listed(sidecar_url, cat_on_grey):
    with Client(sidecar_url) as c:
        cfg = c.config("occlusion")
        assert "param.patch" in cfg.parameters and "min=4" in cfg.parameters["param.patch"].string_value
        with pytest.raises(StylecastError) as e:
            c.explain("saliency", cat_on_grey, steps=3)
        assert e.value.status.name == "INVALID_ARGUMENT" and "steps" in e.value.message
        with pytest.raises(StylecastError) as e:
            c.explain("occlusion", cat_on_grey, patch=1000)
        assert e.value.status.name == "INVALID_ARGUMENT" and "'patch'" in e.value.message
        with pytest.raises(StylecastError) as e:
            c.explain("saliency", cat_on_grey, target=5000)
        assert "'target'" in e.value.message
        assert c.explain("saliency", cat_on_grey).label  # still serving


def _hook_count(model: torch.nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._backward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def test_hooks_never_outlive_a_call_and_the_model_is_not_mutated():
    from stylecast.server.sidecar.attribution.methods import GradCAM, GuidedBackprop
    from stylecast.server.sidecar.networks import efficientnet_lite0

    model = efficientnet_lite0()
    before = (_hook_count(model), model.training, [p.requires_grad for p in model.parameters()][:5])
    x = torch.rand(1, 3, 64, 64) * 255
    GuidedBackprop(model).attribute(x, torch.tensor([1]))
    GradCAM(model).attribute(x, torch.tensor([1]))
    for technique in (GuidedBackprop(model), GradCAM(model)):
        with pytest.raises(RuntimeError):
            technique.attribute(x, torch.tensor([5000]))  # raises inside the call
    after = (_hook_count(model), model.training, [p.requires_grad for p in model.parameters()][:5])
    assert before == after and after[0] == 0


def test_fooling_streams_progress_then_flips_the_label(sidecar_url, cat_on_grey):
    seen = []
    with Client(sidecar_url) as c:
        out = c.optimize("fooling", {"image": cat_on_grey}, progress=lambda s, loss, img: seen.append((s, loss)),
                         target=1, epsilon=2.0, steps=60, preview_every=5)
    assert out["label"][0] == b"goldfish" and b"cat" in out["original_label"][0]
    assert out["linf"][0] <= 2 / 255 + 1e-6 and out["image"].shape == (224, 224, 3)
    # before / after: the same picture within the budget, and the change shown 10x around grey 128
    change = out["image"].astype(np.float32) - out["original"].astype(np.float32)
    assert np.abs(change).max() <= 2.5 and np.abs(change).max() >= 1
    shown = out["perturbation"].astype(np.float32) - 128
    assert np.abs(shown - 10 * change).max() <= 10.5 and np.abs(shown).max() >= 10
    assert [s for s, _ in seen] == list(range(1, len(seen) + 1)) and len(seen) == out["steps"][0]


def test_texture_previews_and_cancel_frees_the_worker(sidecar_url):
    import time

    from stylecast.nets.images import load_rgb

    from tests.images import STYLES

    texture = np.asarray(load_rgb(STYLES / "starry_night.jpg", 96))
    previews = []
    with Client(sidecar_url) as c:
        out = c.optimize("texture_synthesis", {"image": texture}, size=48, steps=12, preview_every=4,
                         progress=lambda s, loss, img: previews.append(img) if img is not None else None)
        assert out["image"].shape == (48, 48, 3) and len(previews) == 3
        t0 = time.monotonic()
        with pytest.raises(StylecastError) as e:
            c.optimize("class_visualization", {"class_index": np.array([130], np.int32)}, steps=1000,
                       progress=lambda s, loss, img: s < 3)
        assert e.value.status.name == "CANCELLED"
        # the single worker of class_visualization is free again: a short job finishes at once
        short = c.optimize("class_visualization", {"class_index": np.array([130], np.int32)}, steps=2, size=32)
        assert short["steps"][0] == 2 and time.monotonic() - t0 < 60
        with pytest.raises(StylecastError, match="unknown parameter"):
            c.optimize("fooling", {"image": texture}, learning_rate=3)


def test_knn_served(sidecar_url):
    from stylecast.nets.images import bundled_photos

    photo = np.asarray(Image.open(dict(bundled_photos())["sklearn_china"]).convert("RGB"))
    with Client(sidecar_url) as c:
        out = c.infer("knn", {"image": photo}, ["names", "distances", "picture"], parameters={"k": 3})
    assert out["names"][0] == b"sklearn_china.jpg" and out["distances"][0] < 0.05
    assert list(out["distances"]) == sorted(out["distances"]) and out["picture"].shape[1] == 4 * 68


def _vgg_energy(image: np.ndarray, layer: str) -> float:
    from stylecast.server.sidecar.networks import cached_loss_network

    x = torch.from_numpy(image.copy()).permute(2, 0, 1)[None].float()
    with torch.no_grad():
        return float(cached_loss_network()(x)[layer].pow(2).mean())


def test_deepdream_and_feature_inversion_served(sidecar_url):
    from stylecast.nets.images import bundled_photos

    photo = np.asarray(Image.open(dict(bundled_photos())["skimage_astronaut"]).convert("RGB").resize((64, 64)))
    with Client(sidecar_url) as c:
        dream = c.deepdream(photo, "relu3_3", steps=8, octaves=2, seed=1)
        again = c.deepdream(photo, "relu3_3", steps=8, octaves=2, seed=1)
        inv = c.invert(photo, "relu2_2", size=64, steps=40)
    assert dream.image.shape == photo.shape and dream.steps == 16 and len(dream.losses) == 16
    assert _vgg_energy(dream.image, "relu3_3") > 1.5 * _vgg_energy(photo, "relu3_3")
    np.testing.assert_array_equal(dream.image, again.image)  # a seed makes it repeatable on CPU
    assert inv.image.shape == (64, 64, 3) and inv.losses[-1] < inv.losses[0] / 3


def test_gatys_blends_weighted_styles(sidecar_url):
    from stylecast.nets.images import load_rgb

    from tests.images import STYLES

    content = np.asarray(load_rgb(STYLES.parent / "styles" / "cafe_terrace.jpg", 64))
    styles = [np.asarray(load_rgb(STYLES / name, 96)) for name in ("starry_night.jpg", "great_wave.jpg")]
    with Client(sidecar_url) as c:
        r = c.gatys(content, styles, [0.7, 0.3], style_size=64, size=64, steps=25)
        with pytest.raises(StylecastError) as e:
            c.gatys(content, styles, [1.0], style_size=64, size=64, steps=2)
    assert r.image.shape == content.shape and r.losses[-1] < 0.7 * r.losses[0]
    # ModelStreamInferResponse carries only error_message (as in Triton): the text names the input
    assert "style_weights" in e.value.message and "one per style image" in e.value.message


@pytest.mark.parametrize("method", ["pca", "tsne"])
def test_embedding_served_one_point_per_gallery_image(sidecar_url, method):
    with Client(sidecar_url) as c:
        view = c.embedding(method, size=256)
    assert view.values.shape == (8, 2) and len(set(view.names)) == 8
    assert view.values.min() == 0.0 and view.values.max() == 1.0 and view.picture.shape == (256, 256, 3)


def test_patches_and_filters_served(sidecar_url, cat_on_grey):
    from stylecast.server.sidecar.networks import cached_loss_network

    x = torch.from_numpy(cat_on_grey.copy()).permute(2, 0, 1)[None].float()
    with torch.no_grad():  # a unit that photos do drive
        channel = int(cached_loss_network()(x)["relu3_3"][0].amax(dim=(1, 2)).argmax())
    with Client(sidecar_url) as c:
        view = c.patches("relu3_3", channel, k=4)
        grid_cls, grid_vgg = c.filters("classifier", scale=4), c.filters("vgg16", scale=4)
        bad = ((lambda: c.patches("relu9_9", 0), "'layer'"), (lambda: c.patches("relu1_1", 64), "'channel'"),
               (lambda: c.embedding("umap"), "'method'"), (lambda: c.filters("alexnet"), "'network'"))
        for call, name in bad:
            with pytest.raises(StylecastError) as e:
                call()
            assert e.value.status.name == "INVALID_ARGUMENT" and name in e.value.message
    assert view.patches.shape == (4, 40, 40, 3) and list(view.values) == sorted(view.values, reverse=True)
    assert len(set(view.names)) == 4 and view.values[0] > 0
    # 32 kernels of 3x3 (EfficientNet-Lite0) and 64 (VGG16), each 3*4 pixels plus a 2-pixel border
    assert grid_cls.shape == (6 * 14, 6 * 14, 3) and grid_vgg.shape == (8 * 14, 8 * 14, 3)


def test_long_optimizations_do_not_starve_short_techniques(sidecar_url, cat_on_grey):
    """One optimization slot: a second optimization waits (and its deadline ends it while waiting),
    while a single-pass technique answers at once."""
    import threading
    import time

    started, stop = threading.Event(), threading.Event()

    def long_job():
        with Client(sidecar_url) as c, pytest.raises(StylecastError):
            c.visualize_class(130, steps=1000, size=64,
                              progress=lambda s, loss, img: started.set() or not stop.is_set())

    t = threading.Thread(target=long_job)
    t.start()
    try:
        assert started.wait(60)
        with Client(sidecar_url) as c:
            t0 = time.monotonic()
            with pytest.raises(StylecastError) as e:
                c.infer("deepdream", {"image": cat_on_grey[:64, :64]}, ["image"], parameters={"steps": 2},
                        timeout=1.5)
            assert e.value.status.name == "DEADLINE_EXCEEDED"
            assert c.explain("saliency", cat_on_grey).label and time.monotonic() - t0 < 30
    finally:
        stop.set()
        t.join(60)
    with Client(sidecar_url) as c:  # the slot is free again
        assert c.deepdream(cat_on_grey[:48, :48], steps=1, octaves=1).steps == 1


def test_no_technique_leaves_hooks_or_changes_the_networks(sidecar_url, cat_on_grey):
    """Every served technique, including calls that fail mid-way, leaves the shared networks as it found them."""
    from stylecast.server.sidecar.networks import cached_loss_network, load_classifier
    from stylecast.server.sidecar.neurons import LAYERS

    nets = [load_classifier(), cached_loss_network(), cached_loss_network("vgg16", LAYERS)]
    state = [(_hook_count(n), n.training, sum(p.requires_grad for p in n.parameters())) for n in nets]
    small = cat_on_grey[::4, ::4]
    with Client(sidecar_url) as c:
        for t in ("saliency", "guided_backprop", "gradcam", "occlusion"):
            c.explain(t, small)
            with pytest.raises(StylecastError):
                c.explain(t, small, target=1000)
        c.deepdream(small, steps=1, octaves=1)
        c.invert(small, steps=1, size=32)
        c.fool(small, 1, steps=1)
        c.patches("relu2_2", 3, k=2)
        c.neighbours(small, k=2)
    assert [(_hook_count(n), n.training, sum(p.requires_grad for p in n.parameters())) for n in nets] == state
    assert all(s[0] == 0 for s in state)
