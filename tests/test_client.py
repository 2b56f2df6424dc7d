"""The stylecast client against the embedded server, with an exported style network."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from stylecast.client import Client, StylecastError


@pytest.fixture()
def client(url):
    with Client(url) as c:
        yield c


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    from stylecast.nets.images import bundled_photos

    path = dict(bundled_photos())["sklearn_china"]
    return Image.open(path).convert("RGB").resize((333, 251))


def test_lists_models_and_styles(client):
    names = {m.name for m in client.models()}
    assert {"add_sub", "tiny_style", "broken"} <= names
    assert client.style_models()["tiny_style"] == ["red", "green", "blue"]


@pytest.mark.parametrize("size", [(333, 251), (64, 64), (1, 1), (17, 5)])
def test_stylize_keeps_any_size(client, photo, size):
    img = photo.resize(size)
    out = client.stylize(img, "green")
    assert isinstance(out, Image.Image) and out.size == size
    arr = client.stylize(np.asarray(img), "green")
    assert isinstance(arr, np.ndarray) and arr.shape == (size[1], size[0], 3) and arr.dtype == np.uint8


def test_styles_differ_and_blends_lie_between(client, photo):
    a = client.stylize(np.asarray(photo), "red").astype(np.float32)
    b = client.stylize(np.asarray(photo), "blue").astype(np.float32)
    mix = client.stylize(np.asarray(photo), {"red": 0.5, "blue": 0.5}).astype(np.float32)
    assert np.abs(a - b).mean() > 1.0
    # a blend is closer to each end than the ends are to each other
    assert np.abs(mix - a).mean() < np.abs(a - b).mean()
    assert np.abs(mix - b).mean() < np.abs(a - b).mean()
    vec = client.stylize(np.asarray(photo), [1.0, 0.0, 1.0]).astype(np.float32)
    np.testing.assert_array_equal(vec, mix)


def test_strength_and_colour_preservation(client, photo):
    src = np.asarray(photo)
    assert np.array_equal(client.stylize(src, "red", strength=0.0), src)
    full = client.stylize(src, "red")
    kept = client.stylize(src, "red", keep_colors=True)
    chroma = lambda x: np.asarray(Image.fromarray(x).convert("YCbCr"), np.float32)[:, :, 1:]  # noqa: E731
    luma = lambda x: np.asarray(Image.fromarray(x).convert("YCbCr"), np.float32)[:, :, 0]  # noqa: E731
    assert np.abs(chroma(kept) - chroma(src)).mean() < np.abs(chroma(full) - chroma(src)).mean() / 2
    assert np.abs(luma(kept) - luma(full)).mean() < 3.0


def test_unknown_style_and_model_errors(client, photo):
    with pytest.raises(StylecastError) as e:
        client.stylize(photo, "purple", model="tiny_style")
    assert e.value.status.name == "INVALID_ARGUMENT" and "red" in e.value.message
    with pytest.raises(StylecastError) as e:
        client.stylize(photo, "red", model="nope")
    assert e.value.status.name == "NOT_FOUND"
    with pytest.raises(ValueError, match="uint8"):
        client.stylize(np.zeros((4, 4, 3), np.float32), "red")


def test_cli_stylize_and_models(url, client, photo, tmp_path):
    src, dst = tmp_path / "in.png", tmp_path / "out.png"
    photo.save(src)
    run = lambda *a: subprocess.run([sys.executable, "-m", "stylecast.cli", *a],  # noqa: E731
                                    capture_output=True, text=True, timeout=120)
    r = run("stylize", str(src), "-o", str(dst), "--blend", "red=0.7,green=0.3", "--url", url)
    assert r.returncode == 0, r.stderr
    got = np.asarray(Image.open(dst), np.float32)
    blend = np.asarray(client.stylize(photo, {"red": 0.7, "green": 0.3}), np.float32)
    red = np.asarray(client.stylize(photo, "red"), np.float32)
    assert np.abs(got - blend).max() <= 1  # the blend the CLI asked for, not one style
    assert np.abs(got - red).mean() > 10 * max(np.abs(got - blend).mean(), 0.1)
    r = run("models", "--url", url)
    assert r.returncode == 0 and "tiny_style" in r.stdout and "red, green, blue" in r.stdout
    r = run("stylize", str(src), "-o", str(dst), "--style", "nope", "--url", url)
    assert r.returncode != 0 and "nope" in r.stderr


def test_client_stays_light():
    """`pip install stylecast` (no extras) must be enough for the client: no torch, no onnxruntime."""
    code = ("import sys, stylecast.client, stylecast.cli; stylecast.cli.build_parser(); "
            "heavy = [m for m in ('torch', 'onnxruntime', 'onnx') if m in sys.modules]; "
            "assert not heavy, heavy")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


def test_stylize_stream_keeps_order_and_bounds_in_flight(client, photo):
    frames = [np.asarray(photo.rotate(k * 7)) for k in range(7)]
    read = []

    def source():
        for i, f in enumerate(frames):
            read.append(i)
            yield f

    expected = [client.stylize(f, "blue") for f in frames]
    outputs = []
    for k, out in enumerate(client.stylize_stream(source(), "blue", in_flight=3)):
        outputs.append(out)
        assert len(read) <= k + 1 + 3  # never more than in_flight frames read ahead of the consumer
    assert len(outputs) == len(frames)
    for got, want in zip(outputs, expected, strict=True):
        np.testing.assert_array_equal(got, want)


def test_async_client_matches_sync(url, client, photo):
    import asyncio

    from stylecast.client import AsyncClient

    src = np.asarray(photo)

    async def run():
        async with AsyncClient(url) as ac:
            assert (await ac.style_models())["tiny_style"] == ["red", "green", "blue"]
            one = await ac.stylize(src, {"red": 0.25, "green": 0.75})
            frames = [out async for out in ac.stylize_stream([src, src[::-1].copy()], "red", in_flight=2)]
            with pytest.raises(StylecastError) as e:
                await ac.stylize(src, "red", model="nope")
            assert e.value.status.name == "NOT_FOUND"
            return one, frames

    one, frames = asyncio.run(run())
    np.testing.assert_array_equal(one, client.stylize(src, {"red": 0.25, "green": 0.75}))
    np.testing.assert_array_equal(frames[1], client.stylize(src[::-1].copy(), "red"))


def test_stream_transport_matches_calls(client, photo):
    frames = [np.asarray(photo.rotate(k * 11)) for k in range(6)]
    calls = list(client.stylize_stream(frames, "green", in_flight=3))
    stream = list(client.stylize_stream(frames, "green", in_flight=3, transport="stream"))
    assert len(stream) == len(frames)
    for a, b in zip(calls, stream, strict=True):
        np.testing.assert_array_equal(a, b)
    # A frame the model rejects surfaces as the typed error. The stream protocol carries only the
    # message (no status code), as with Triton.
    with pytest.raises(StylecastError, match="has no elements"):
        list(client.stylize_stream([frames[0], np.zeros((0, 4, 3), np.uint8)], "green", transport="stream"))
    assert client.stylize(frames[0], "green").shape == frames[0].shape


def test_async_stylize_stream_over_one_stream(url, photo):
    frames = [np.asarray(photo)] * 5

    import asyncio

    from stylecast.client import AsyncClient

    async def run():
        async with AsyncClient(url) as ac:
            return [f async for f in ac.stylize_stream(frames, "red", transport="stream", in_flight=2)]

    with Client(url) as c:
        expected = c.stylize(frames[0], "red")
    got = asyncio.run(run())
    assert len(got) == 5 and all(np.array_equal(g, expected) for g in got)
