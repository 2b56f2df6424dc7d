"""Gallery features, nearest neighbours, PCA / t-SNE pictures and first-layer filters."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from stylecast.nets.images import bundled_photos
from stylecast.server.sidecar.gallery import index as gallery
from stylecast.server.sidecar.networks import efficientnet_lite0


@pytest.fixture(scope="module")
def private_cache(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("STYLECAST_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


@pytest.fixture(scope="module")
def indexed(tmp_path_factory, private_cache):
    photos = dict(bundled_photos())
    paths = [photos[n] for n in ("skimage_chelsea", "skimage_coffee", "sklearn_china", "skimage_rocket",
                                 "skimage_astronaut", "mpl_grace_hopper")]
    d = tmp_path_factory.mktemp("gallery")
    for p in paths:
        (d / p.name).write_bytes(p.read_bytes())
    files = sorted(d.iterdir())
    return efficientnet_lite0(), files, gallery.index_gallery(efficientnet_lite0(), files)


@pytest.mark.parametrize("method", ["pca", "tsne"])
def test_crops_of_one_photo_land_together(tmp_path, monkeypatch, method):
    """Three crops of each of five photos: in the 2-D map each crop lies nearer the crops of its own photo
    than the crops of any other photo does on average (a random embedding fails this)."""
    monkeypatch.setenv("STYLECAST_CACHE", str(tmp_path / "cache"))  # the module's cache counts its own files
    photos = dict(bundled_photos())
    names = ("skimage_chelsea", "skimage_coffee", "skimage_rocket", "skimage_astronaut", "sklearn_flower")
    files = []
    for k, name in enumerate(names):
        img = Image.open(photos[name]).convert("RGB")
        w, h = img.size
        boxes = ((0, 0, int(w * 0.8), int(h * 0.8)), (int(w * 0.2), int(h * 0.2), w, h),
                 (int(w * 0.1), 0, int(w * 0.9), int(h * 0.85)))
        for j, box in enumerate(boxes):
            path = tmp_path / f"{k}_{j}.png"
            img.crop(box).save(path)
            files.append(path)
    g = gallery.index_gallery(efficientnet_lite0(), files)
    xy = g.embed(method, 0)
    owner = np.array([int(n.split("_")[0]) for n in g.names])  # which photo each point was cropped from
    d = np.linalg.norm(xy[:, None] - xy[None], axis=2)
    same = owner[:, None] == owner[None]
    np.fill_diagonal(same, False)
    other = owner[:, None] != owner[None]
    within, between = d[same].mean(), d[other].mean()
    assert within < 0.5 * between, f"{method}: crops of one photo {within:.3f} apart, of different ones {between:.3f}"


def test_knn_finds_the_same_scene_first_and_a_variant_next(indexed):
    model, files, g = indexed
    cat = Image.open(next(f for f in files if f.name == "chelsea.png"))
    query = gallery.penultimate(model, gallery._prepare(cat.transpose(Image.Transpose.FLIP_LEFT_RIGHT)))[0].numpy()
    idx, dist = g.knn(query, 3)
    assert g.names[idx[0]] == "chelsea.png" and dist[0] < dist[1] <= dist[2]


def test_cache_is_keyed_by_content(indexed, tmp_path):
    model, files, g = indexed
    again = gallery.index_gallery(model, files)
    np.testing.assert_array_equal(again.features, g.features)
    cache = gallery.cache_dir() / "gallery" / model.name
    assert len(list(cache.glob("*.npz"))) == len(files)
    changed = tmp_path / "chelsea.png"
    Image.open(files[0]).rotate(90).save(changed)
    gallery.index_gallery(model, [changed])
    assert len(list(cache.glob("*.npz"))) == len(files) + 1


@pytest.mark.parametrize("method", ["pca", "tsne"])
def test_embedding_picture(indexed, method):
    _, files, g = indexed
    xy = g.embed(method)
    assert xy.shape == (len(files), 2) and xy.min() >= 0 and xy.max() <= 1
    pic = g.scatter(xy, 256)
    assert pic.shape == (256, 256, 3) and (pic < 250).mean() > 0.1  # thumbnails were drawn


def test_first_layer_filters_grid(indexed):
    model = indexed[0]
    grid = gallery.first_layer_filters(model)
    assert grid.shape[2] == 3 and grid.shape[0] > 24 and grid.std() > 20


def test_receptive_fields_match_vgg16_arithmetic():
    assert gallery.receptive_field("relu1_1") == (3, 1)
    assert gallery.receptive_field("relu1_2") == (5, 1)
    assert gallery.receptive_field("relu2_2") == (14, 2)
    assert gallery.receptive_field("relu3_3") == (40, 4)
    assert gallery.receptive_field("relu4_3") == (92, 8)


def test_max_activating_patches_are_ranked_and_excite_the_unit(indexed):
    import torch
    from stylecast.nets.vgg import VGGFeatures

    _, files, _ = indexed
    vgg = VGGFeatures(("relu3_3",))
    with torch.no_grad():  # a channel that this gallery does drive
        channel = int(vgg(gallery._prepare(Image.open(files[0])))["relu3_3"][0].amax(dim=(1, 2)).argmax())
    patches, scores, _ = gallery.max_activating_patches(vgg, files, "relu3_3", channel=channel, k=3)
    assert len(patches) == 3 and scores == sorted(scores, reverse=True)
    assert all(p.shape[2] == 3 and max(p.shape[:2]) <= 40 for p in patches)
    # the best patch, alone, still drives the channel above the gallery's typical response
    with torch.no_grad():
        own = vgg(torch.from_numpy(patches[0].copy()).permute(2, 0, 1)[None].float())["relu3_3"][0, channel].max()
    assert float(own) > 0.25 * scores[0]


def test_vgg16_from_a_torchvision_file_and_classifiers_by_import_path(tmp_path, monkeypatch):
    """A torchvision vgg16 file on disk is used (FC7 features, 4096-d); a user's classifier by import path."""
    import torch
    from stylecast.nets.vgg import TORCHVISION_FILE
    from stylecast.server.sidecar import networks

    hub = tmp_path / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    torch.manual_seed(0)
    state = {}
    for i, (cin, cout) in zip([0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28],
                              [(3, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256), (256, 256),
                               (256, 512), (512, 512), (512, 512), (512, 512), (512, 512), (512, 512)], strict=True):
        state[f"features.{i}.weight"] = torch.randn(cout, cin, 3, 3) * 0.05
        state[f"features.{i}.bias"] = torch.zeros(cout)
    for i, (fin, fout) in zip([0, 3, 6], [(25088, 4096), (4096, 4096), (4096, 1000)], strict=True):
        state[f"classifier.{i}.weight"] = torch.randn(fout, fin) * 0.01
        state[f"classifier.{i}.bias"] = torch.zeros(fout)
    torch.save(state, hub / TORCHVISION_FILE)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    vgg = networks.load_classifier("vgg16")
    x = torch.rand(1, 3, 64, 64) * 255
    assert vgg(x).shape == (1, 1000) and vgg.features(x).shape == (1, 4096) and vgg.name == "vgg16"
    assert networks.load_classifier("tests.test_gallery:tiny_classifier").name == "tiny"
    with pytest.raises(ValueError):
        networks.load_classifier("no-such-network")


def tiny_classifier():
    import torch
    from stylecast.server.sidecar.networks import Classifier

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                              torch.nn.Flatten(), torch.nn.Linear(8, 1000))
    return Classifier(net, net[0], 1 / 255, 0.0, "tiny", lambda x: net[:4](x))


def test_the_sidecar_scans_every_layer_once_in_the_background_at_load(sidecar_url, monkeypatch):
    """max_activating_patches' load starts one scan of the gallery for every layer (a fresh server's first
    call used to scan for a minute and miss the client's deadline); calls at any layer then find it done."""
    import time

    from stylecast.client import Client
    from stylecast.server.sidecar.gallery import specs
    from stylecast.server.sidecar.neurons import LAYERS

    deadline = time.monotonic() + 300
    while not specs._SCANS and time.monotonic() < deadline:
        time.sleep(0.5)
    assert specs._SCANS, "no background scan finished"
    assert all(set(m) == set(LAYERS) for m in specs._SCANS.values())

    def no_second_scan(*args, **kwargs):
        raise AssertionError("a call scanned the gallery again")

    monkeypatch.setattr(gallery, "unit_maxima", no_second_scan)
    with Client(sidecar_url, timeout=30) as c:
        for layer, channel in (("relu1_2", 3), ("relu4_3", 17)):
            r = c.patches(layer, channel, k=3)
            assert len(r.values) == 3 and list(r.values) == sorted(r.values, reverse=True)


def test_a_server_that_exits_during_the_background_scan_exits_cleanly(tmp_path):
    """The gallery scan runs in a thread; a process leaving during it (Ctrl-C just after `stylecast serve`)
    stops the scan after its batch instead of aborting inside a torch call (exit code 134)."""
    import os
    import subprocess
    import sys

    code = ("from stylecast.server.app import Server, ServerOptions; "
            "s = Server(ServerOptions(model_repository=None, port=0, metrics_port=None, sidecar=True)); "
            "s.start(); s.stop(0)")
    env = {**os.environ, "STYLECAST_CACHE": str(tmp_path), "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "gallery scan stopped" in r.stderr or "scanning" not in r.stderr, r.stderr[-2000:]
