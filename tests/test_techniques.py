"""One declaration per technique: every spec is served as declared, runs from the generic CLI, and both
clients reach it with the same methods. Two servers in one process keep their own optimization slots."""

from __future__ import annotations

import asyncio
import inspect
import threading
import time

import numpy as np
import pytest
from PIL import Image
from stylecast.client import AsyncClient, Client, StylecastError
from stylecast.client.techniques import technique_params
from stylecast.server.sidecar import catalog

from tests.images import mass_inside

SPECS = catalog.specs()

# The CLI options that feed each input name, and the smallest work that still runs every technique.
ARGS_BY_INPUT = {"image": ["{small}"], "content": ["{small}"], "style": ["--style", "{small}"],
                 "class_index": ["--target", "130"], "method": ["--method", "pca"], "layer": ["--layer", "relu1_2"],
                 "channel": ["--channel", "3"], "network": ["--network", "vgg16"], "style_weights": []}
SMALL = {"steps": "1", "size": "32", "octaves": "1", "patch": "32", "stride": "32", "k": "2", "scale": "1"}


@pytest.mark.parametrize("name", sorted(SPECS))
def test_served_config_is_the_spec(sidecar_url, name):
    spec = SPECS[name]
    with Client(sidecar_url) as c:
        cfg = c.config(name)
    assert [(t.name, t.data_type, list(t.dims), t.optional) for t in cfg.input] == \
        [(t.name, t.dtype, list(t.dims), t.optional) for t in spec.inputs]
    assert [o.name for o in cfg.output] == [t.name for t in spec.outputs]
    assert cfg.model_transaction_policy.decoupled == spec.decoupled
    listed = technique_params(cfg)
    assert {p.name: p.default for p in spec.params} == {n: p.default for n, p in listed.items()}
    for p in spec.params:
        if p.choices:
            assert listed[p.name].choices == p.choices
        else:
            assert (listed[p.name].low, listed[p.name].high) == (p.low, p.high)


@pytest.mark.parametrize("name", sorted(SPECS))
def test_every_technique_runs_from_the_generic_cli(sidecar_url, cat_on_grey, tmp_path, capsys, name):
    """`stylecast explain` knows no technique by name: inputs come from the config, parameters are typed
    by it. A new spec whose inputs the CLI cannot feed fails here."""
    from stylecast.cli import main

    spec = SPECS[name]
    small = tmp_path / "small.png"
    Image.fromarray(cat_on_grey[::5, ::5]).save(small)
    args = [a.format(small=small) for t in spec.inputs for a in ARGS_BY_INPUT[t.name]]
    params = [f"{p.name}={p.kind(max(float(SMALL[p.name]), p.low))}" for p in spec.params if p.name in SMALL]
    if "style_size" in {p.name for p in spec.params}:
        params.append("style_size=32")
    dst = tmp_path / "out.png"
    assert main(["explain", name, *args, *sum((["--param", p] for p in params), []), "-o", str(dst),
                 "--url", sidecar_url]) == 0
    picture = np.asarray(Image.open(dst).convert("RGB"), np.float32)
    assert picture.std() > 1.0, f"{name}: a flat picture"
    assert f"{name}:" in capsys.readouterr().out


def test_cli_explain_results_say_what_each_technique_did(sidecar_url, cat_on_grey, tmp_path, capsys):
    from stylecast.cli import main

    src, dst = tmp_path / "cat.png", tmp_path / "out.png"
    Image.fromarray(cat_on_grey).save(src)

    def explain(*args: str) -> tuple[str, np.ndarray]:
        assert main(["explain", *args, "-o", str(dst), "--url", sidecar_url]) == 0, args
        return capsys.readouterr().out, np.asarray(Image.open(dst).convert("RGB"), np.float32)

    out, overlay = explain("gradcam", str(src))
    assert "cat" in out  # the predicted class: tabby / tiger cat / Egyptian cat
    heat = ((overlay - 0.45 * cat_on_grey) / 0.55).mean(2)  # the colormap's brightness rises with the map
    assert mass_inside(np.clip(heat - np.median(heat), 0, None)) > 0.5, "the overlay's heat is not on the cat"
    out, _ = explain("fooling", str(src), "--target", "1")
    assert "'label': 'goldfish'" in out and "'original_label': " in out and "array" not in out, out
    out, _ = explain("gradcam", str(src), "--target", "967")
    assert "'espresso' (class 967" in out
    out, _ = explain("class_visualization", "--param", "steps=3", "--param", "size=48")
    assert "3 steps" in out  # the server's default class (no --target)
    out, grid = explain("filters", "--network", "vgg16", "--param", "scale=2")
    assert "64 kernels" in out and grid.shape == (8 * 8, 8 * 8, 3)
    out, _ = explain("knn", str(src), "--k", "3")
    assert len(out.split(": ", 2)[2].split(", ")) == 3
    with pytest.raises(SystemExit, match="among"):
        explain("saliency", str(src), "--param", "octaves=2")
    with pytest.raises(SystemExit, match="must be int"):
        explain("saliency", str(src), "--param", "target=cat")
    with pytest.raises(SystemExit, match="give an input image"):
        explain("saliency")


def test_both_clients_have_the_same_methods():
    def public(cls) -> dict[str, inspect.Signature]:
        return {n: inspect.signature(f) for n, f in inspect.getmembers(cls, callable) if not n.startswith("_")}

    sync, aio = public(Client), public(AsyncClient)
    assert set(sync) == set(aio), set(sync) ^ set(aio)
    for name in sync:
        assert list(sync[name].parameters) == list(aio[name].parameters), name


def test_async_client_gives_the_sync_answers(sidecar_url, cat_on_grey):
    with Client(sidecar_url) as c:
        cam = c.explain("gradcam", cat_on_grey)
        near = c.neighbours(cat_on_grey, k=3)
        tex = c.texture(cat_on_grey[::4, ::4], size=32, steps=3, seed=5)

    async def run():
        async with AsyncClient(sidecar_url) as ac:
            await ac.wait_ready(10)
            seen = []
            return (await ac.explain("gradcam", cat_on_grey), await ac.neighbours(cat_on_grey, k=3),
                    await ac.texture(cat_on_grey[::4, ::4], size=32, steps=3, seed=5,
                                     progress=lambda s, loss, img: seen.append(s)), seen)

    a_cam, a_near, a_tex, seen = asyncio.run(run())
    np.testing.assert_array_equal(cam.map, a_cam.map)
    assert cam.label == a_cam.label and near.names == a_near.names
    np.testing.assert_array_equal(tex.image, a_tex.image)  # seeded: the same pixels
    assert seen == [1, 2, 3] and a_tex.losses == tex.losses


def test_async_cancel_stops_the_optimization_on_the_server(sidecar_url, cat_on_grey):
    """Returning False from progress cancels the stream; the single slot is free for the next job."""
    async def run():
        async with AsyncClient(sidecar_url) as ac:
            with pytest.raises(StylecastError) as e:
                await ac.deepdream(cat_on_grey, steps=1000, progress=lambda s, loss, img: s < 2)
            start = time.monotonic()
            r = await ac.texture(cat_on_grey[::4, ::4], size=32, steps=2, timeout=60)
            return e.value, time.monotonic() - start, r

    err, waited, r = asyncio.run(run())
    assert err.status.name == "CANCELLED" and r.steps == 2
    assert waited < 20, f"the next optimization waited {waited:.0f}s for the cancelled one"


def test_two_servers_in_one_process_keep_their_own_slots(sidecar_server, cat_on_grey):
    """A long optimization on one server does not hold the slot of another server in the same process."""
    from stylecast.server.app import Server, ServerOptions

    other = Server(ServerOptions(model_repository=None, port=0, metrics_port=None, sidecar=True,
                                 max_optimizations=1))
    other.start()
    busy, done = threading.Event(), threading.Event()

    def long_job() -> None:
        with Client(f"127.0.0.1:{sidecar_server.port}") as c:
            try:
                c.deepdream(cat_on_grey, steps=1000, timeout=60,
                            progress=lambda s, loss, img: busy.set() or not done.is_set())
            except StylecastError:
                pass

    t = threading.Thread(target=long_job)
    t.start()
    try:
        assert busy.wait(60)
        with Client(f"127.0.0.1:{other.port}") as c:
            r = c.texture(cat_on_grey[::4, ::4], size=32, steps=2, timeout=15)  # would wait for the other's slot
        assert r.steps == 2 and t.is_alive()
    finally:
        done.set()
        t.join()
        other.stop()


def test_explain_help_lists_the_served_parameters(sidecar_url, capsys):
    """`stylecast explain TECHNIQUE --help` reads the technique's inputs and parameters from the server, so a
    user sees the --param names (defaults, bounds, choices) before guessing one wrong."""
    from stylecast.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["explain", "deepdream", "--url", sidecar_url, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "--output" in out and f"deepdream as served at {sidecar_url}" in out
    for p in SPECS["deepdream"].params:
        assert f"    {p.name}: {p.kind.__name__}, default {p.default}" in out, p.name
    with pytest.raises(SystemExit):
        main(["explain", "deepdream", "--help", "--url", "127.0.0.1:1"])
    assert "none answered at 127.0.0.1:1" in capsys.readouterr().out
