"""The lecture's neuron-level techniques: the gradient of one intermediate neuron with respect to the pixels (saliency
and guided backprop of a neuron), and gradient ascent on one channel (feature visualization)."""

from __future__ import annotations

import numpy as np
import pytest
from stylecast.client import Client


@pytest.fixture(scope="module")
def client(sidecar_url):
    with Client(sidecar_url, timeout=300) as c:
        yield c


def _centre(m: np.ndarray) -> tuple[float, float]:
    m = np.clip(m, 0, None)
    ys, xs = np.indices(m.shape)
    return float((ys * m).sum() / m.sum()), float((xs * m).sum() / m.sum())


def test_a_neurons_guided_backprop_lies_in_its_receptive_field(client, cat_on_grey):
    n = client.explain_neuron(cat_on_grey, "relu3_3", 17)
    assert n.layer == "relu3_3" and n.channel == 17 and n.activation > 0
    t, l, b, r = n.box
    assert 0 < b - t < 80 and 0 < r - l < 80  # relu3_3 sees 40 px of 224: 57 of this 320 px image
    inside = np.clip(n.map, 0, None)[t:b, l:r].sum() / np.clip(n.map, 0, None).sum()
    assert inside > 0.95, f"{inside:.2f} of the map lies inside the neuron's receptive field"
    whole = client.explain("guided_backprop", cat_on_grey).map
    assert np.corrcoef(n.map.ravel(), whole.ravel())[0, 1] < 0.5  # not the class-level map
    assert "relu3_3 channel 17" in client.explain("saliency", cat_on_grey, layer="relu3_3", channel=17).label


def test_the_map_moves_with_the_chosen_neuron(client):
    from PIL import Image
    from stylecast.nets.images import bundled_photos

    photo = np.asarray(Image.open(dict(bundled_photos())["skimage_astronaut"]).convert("RGB").resize((224, 224)))
    live = []  # neurons of one channel that fire here (a dead ReLU has no gradient)
    for y, x in ((12, 12), (12, 40), (40, 12), (40, 40), (26, 26), (20, 34)):
        n = client.explain_neuron(photo, "relu3_3", 135, y=y, x=x, technique="saliency")
        assert (n.y, n.x) == (y, x)
        if n.activation > 0 and n.map.sum() > 0:
            live.append(n)
    assert len(live) >= 2, "too few firing neurons to compare"
    a, b = live[0], live[-1]
    (ay, ax), (by, bx) = _centre(a.map), _centre(b.map)
    stride = 4  # relu3_3's stride in pixels of the 224 px input
    assert abs((by - ay) - (b.y - a.y) * stride) < 12 and abs((bx - ax) - (b.x - a.x) * stride) < 12, \
        (a.y, a.x, b.y, b.x, ay, ax, by, bx)


def test_a_neuron_outside_the_layer_is_refused(client, cat_on_grey):
    from stylecast.client import StylecastError

    with pytest.raises(StylecastError, match="channel"):
        client.explain_neuron(cat_on_grey, "relu1_1", 200)
    with pytest.raises(StylecastError, match="outside"):
        client.explain_neuron(cat_on_grey, "relu4_3", 3, y=500, x=0)


def test_feature_visualization_raises_the_channels_activation(client):
    losses: list[float] = []
    r = client.visualize_feature("relu3_3", 5, steps=24, size=96, preview_every=8,
                                 progress=lambda step, loss, preview: losses.append(loss))
    assert r.image.shape == (96, 96, 3) and r.steps == 24 and len(losses) == 24
    assert np.mean(losses[-4:]) < np.mean(losses[:4]) - 1.0, losses  # the channel's mean rose
    start = client.visualize_feature("relu3_3", 5, steps=1, size=96)
    assert r.extra["activation"] > 2 * start.extra["activation"]
    logit = [client.visualize_feature("class", 130, steps=n, size=96).extra["activation"] for n in (1, 12)]
    assert logit[1] > logit[0] + 1.0, logit  # 'class' is class visualization's objective


def test_texture_synthesis_matches_the_layers_asked_for(client):
    """Gram reconstruction by layer (the lecture's figure): matching relu1_1 alone leaves the higher layers'
    statistics unmatched; adding relu2_1 and relu3_1 brings them closer to the texture's."""
    import torch
    from stylecast.nets.images import load_rgb
    from stylecast.nets.losses import gram_matrix
    from stylecast.server.sidecar.networks import cached_loss_network

    from tests.images import STYLES

    texture = np.asarray(load_rgb(STYLES / "starry_night.jpg", 96))
    low = client.texture(texture, layers="relu1_1", loss_network="vgg16", size=64, steps=150)
    many = client.texture(texture, layers="relu1_1,relu2_1,relu3_1", loss_network="vgg16", size=64, steps=150)
    vgg = cached_loss_network("vgg16", ("relu3_1",))

    def gram(img: np.ndarray) -> torch.Tensor:
        with torch.no_grad():
            return gram_matrix(vgg(torch.from_numpy(np.array(img)).permute(2, 0, 1)[None].float())["relu3_1"])

    target = gram(texture)
    far, near = (float((gram(r.image) - target).pow(2).sum() / target.pow(2).sum()) for r in (low, many))
    assert near < 0.85 * far, (near, far)
    with pytest.raises(Exception, match="relu9_9"):
        client.texture(texture, layers="relu9_9", loss_network="vgg16", size=32, steps=1)


def _pasted(background: str, at: tuple[int, int], side: int = 130) -> tuple[np.ndarray, np.ndarray]:
    """The cat photo pasted at ``at`` into a blurred bundled photo; and the pasted rectangle."""
    from PIL import Image, ImageFilter
    from stylecast.nets.images import bundled_photos

    photos = dict(bundled_photos())
    canvas = Image.open(photos[background]).convert("RGB").resize((320, 320)).filter(ImageFilter.GaussianBlur(6))
    cat = Image.open(photos["skimage_chelsea"]).convert("RGB")
    cat = cat.resize((side, round(side * cat.height / cat.width)))
    canvas.paste(cat, at)
    box = np.zeros((320, 320), bool)
    box[at[1]:at[1] + cat.height, at[0]:at[0] + cat.width] = True
    return np.asarray(canvas), box


def test_the_segmentation_mask_follows_a_pasted_object(client):
    scores = []
    for background, at in (("sklearn_china", (20, 30)), ("skimage_rocket", (170, 190)),
                           ("skimage_coffee", (150, 20)), ("sklearn_flower", (40, 170))):
        image, box = _pasted(background, at)
        seg = client.segment(image, target=285)  # Egyptian cat
        mask = seg.mask.astype(bool)
        assert seg.mask.shape == image.shape[:2] and set(np.unique(seg.mask)) <= {0, 1}
        cy, cx = _centre(mask.astype(float))
        assert box[round(cy), round(cx)], (background, cy, cx)  # the mask sits on the pasted cat
        scores.append(((mask & box).sum() / max(1, mask.sum()), (mask & box).sum() / box.sum()))
    precision, coverage = np.median(scores, axis=0)
    assert precision >= 0.7 and coverage >= 0.25, scores


def test_keep_subject_leaves_the_subject_and_paints_the_rest(sidecar_server, tiny_style_checkpoint, tmp_path):
    """A server with a style model and the sidecar: inside the subject the photo, away from it the stylization."""
    from stylecast.export.onnx_export import export_to_repository
    from stylecast.server.app import Server, ServerOptions

    export_to_repository(tiny_style_checkpoint, "tiny", tmp_path / "repo")
    image, box = _pasted("sklearn_china", (90, 80))
    srv = Server(ServerOptions(model_repository=tmp_path / "repo", port=0, metrics_port=None, sidecar=True))
    try:
        with Client(f"127.0.0.1:{srv.start()}", timeout=300) as c:
            plain = np.asarray(c.stylize(image, "red"), np.int32)
            kept = np.asarray(c.stylize(image, "red", keep_subject=True), np.int32)
            mask = c.segment(image).mask.astype(bool)
    finally:
        srv.stop()
    from scipy.ndimage import binary_erosion

    inner, outer = binary_erosion(mask, iterations=12), ~binary_erosion(~mask, iterations=12)
    assert inner.sum() > 1000 and (~outer).sum() > 1000
    assert np.abs(kept - image)[inner].mean() <= 12  # the subject as in the photo
    assert np.abs(kept - plain)[~outer].mean() <= 6  # the rest as the plain stylization
    assert np.abs(plain - image)[~outer].mean() > 20  # which is far from the photo
