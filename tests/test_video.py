"""Video through a real server: frame count, order, size and audio kept; stabilization lowers flicker."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from stylecast.client import Client
from stylecast.client.video import TemporalStabilizer, _decode, flicker, stylize_video

av = pytest.importorskip("av")


def make_clip(path: Path, frames: list[np.ndarray], rate: int = 10, audio: bool = True) -> None:
    """An H.264 clip (lossless, so the test measures the pipeline, not the codec), with a 440 Hz AAC tone."""
    h, w = frames[0].shape[:2]
    with av.open(str(path), "w") as out:
        v = out.add_stream("libx264", rate=rate)
        v.width, v.height, v.pix_fmt = w, h, "yuv444p"
        v.options = {"crf": "0"}
        a = None
        if audio:  # every stream is added before the first packet is written
            a = out.add_stream("aac", rate=16000)
            a.layout = "mono"
            a.time_base = Fraction(1, 16000)
        for f in frames:
            for p in v.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                out.mux(p)
        for p in v.encode():
            out.mux(p)
        if a is not None:
            t = np.arange(int(16000 * len(frames) / rate)) / 16000
            samples = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]
            for i in range(0, samples.shape[1], 1024):
                fr = av.AudioFrame.from_ndarray(samples[:, i:i + 1024].copy(), format="fltp", layout="mono")
                fr.sample_rate, fr.pts, fr.time_base = 16000, i, Fraction(1, 16000)
                for p in a.encode(fr):
                    out.mux(p)
            for p in a.encode():
                out.mux(p)


@pytest.fixture(scope="module")
def photos() -> list[np.ndarray]:
    from stylecast.nets.images import bundled_photos

    paths = [p for _, p in bundled_photos()[:6]]
    return [np.asarray(Image.open(p).convert("RGB").resize((66, 50))) for p in paths]


def test_video_keeps_frames_order_size_and_audio(url, photos, tmp_path):
    src, dst = tmp_path / "in.mp4", tmp_path / "out.mp4"
    make_clip(src, photos)
    with Client(url) as c:
        report = stylize_video(c, src, dst, "green", in_flight=3, progress=False)
        decoded_in = list(_decode(src))
        expected = [c.stylize(f, "green").astype(np.float32) for f in decoded_in]
    out = list(_decode(dst))
    assert report.frames == len(out) == len(photos)
    assert all(f.shape == (50, 66, 3) for f in out)
    for k, frame in enumerate(out):  # each output frame is closest to its own stylized input frame
        errors = [np.abs(frame.astype(np.float32) - e).mean() for e in expected]
        assert int(np.argmin(errors)) == k
    with av.open(str(dst)) as o:
        assert len(o.streams.audio) == 1 and o.streams.audio[0].codec_context.name == "aac"
        packets = sum(1 for p in o.demux(o.streams.audio[0]) if p.size)
    assert report.audio_packets == packets > 0


def test_stabilization_lowers_flicker_on_a_static_scene(url, photos, tmp_path):
    rng = np.random.default_rng(0)
    base = photos[0].astype(np.int16)
    frames = [np.clip(base + rng.normal(0, 4, base.shape), 0, 255).astype(np.uint8) for _ in range(8)]
    src = tmp_path / "static.mp4"
    make_clip(src, frames, audio=False)
    results = {}
    with Client(url) as c:
        for stable in (0.0, 0.8):
            dst = tmp_path / f"out{stable}.mp4"
            stylize_video(c, src, dst, "red", stable=stable, progress=False)
            results[stable] = flicker(list(_decode(dst)))
    assert results[0.8] < 0.6 * results[0.0], results


def test_stabilizer_follows_motion():
    s = TemporalStabilizer(0.9, threshold=10)
    a = np.zeros((4, 4, 3), np.uint8)
    s(a, np.full_like(a, 100))
    still = s(a, np.full_like(a, 200))  # input unchanged: output held near the previous one
    moved = s(np.full_like(a, 255), np.full_like(a, 50))  # input changed: the new output passes through
    assert still.max() <= 115 and moved.min() == 50


def test_live_source_through_cli(url, tmp_path):
    from stylecast.cli import main

    dst = tmp_path / "live.mp4"
    rc = main(["stylize-stream", "testsrc=size=64x48:rate=10", "--format", "lavfi", "--max-frames", "5",
               "-o", str(dst), "--style", "blue", "--url", url])
    assert rc == 0 and len(list(_decode(dst))) == 5


def _requests_for(triton, model: str) -> int:
    stats = triton.get_inference_statistics(model).model_stats
    return sum(s.inference_stats.success.count + s.inference_stats.fail.count for s in stats)


@pytest.mark.parametrize("transport", ["calls", "stream"])
def test_cancelled_async_stream_frees_the_server(url, photos, triton, transport):
    """Closing the async generator stops reading frames and sending requests; the server answers the next
    caller at once. Observed: the frames read and the requests the server saw stay near what was consumed."""
    import asyncio

    from stylecast.client import AsyncClient

    big = [np.asarray(Image.fromarray(p).resize((400, 300))) for p in photos] * 4
    read = []

    def frames():
        for f in big:
            read.append(1)
            yield f

    before = _requests_for(triton, "tiny_style")

    async def run():
        async with AsyncClient(url) as c:
            agen = c.stylize_stream(frames(), "red", in_flight=4, transport=transport)
            got = [await agen.__anext__() for _ in range(2)]
            await agen.aclose()  # cancels the requests still in flight
            await asyncio.sleep(1.0)  # anything still running on the server would finish and count by now
            small = await c.stylize(photos[0], "red", timeout=30)
            return got, small

    got, small = asyncio.run(run())
    assert len(got) == 2 and small.shape == photos[0].shape
    assert len(read) <= 2 + 4 + 1, f"{len(read)} of {len(big)} frames read after the consumer stopped at 2"
    seen = _requests_for(triton, "tiny_style") - before
    assert seen <= 2 + 4 + 1, f"the server saw {seen} requests for 2 frames consumed with 4 in flight"
