"""Video and live streams through a style model: read with PyAV (its wheels carry FFmpeg), stylize with
bounded frames in flight, write with the audio track copied, optionally with temporal stabilization."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from .core import Client, Style

log = logging.getLogger(__name__)


@dataclass
class VideoReport:
    frames: int
    seconds: float
    audio_packets: int

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds else 0.0


class TemporalStabilizer:
    """Reduces flicker without optical flow: where the input pixel did not change since the previous
    frame, the output is blended with the previous output (an exponential moving average that resets
    wherever the scene moves)."""

    def __init__(self, strength: float = 0.8, threshold: float = 12.0) -> None:
        if not 0.0 <= strength < 1.0:
            raise ValueError(f"strength must be in [0, 1), got {strength}")
        self.strength, self.threshold = strength, threshold
        self._prev_in: np.ndarray | None = None
        self._prev_out: np.ndarray | None = None

    def __call__(self, frame: np.ndarray, stylized: np.ndarray) -> np.ndarray:
        out = stylized.astype(np.float32)
        if self._prev_in is not None and self._prev_in.shape == frame.shape:
            change = np.abs(frame.astype(np.int16) - self._prev_in.astype(np.int16)).max(axis=2, keepdims=True)
            still = (change < self.threshold).astype(np.float32) * self.strength
            out = still * self._prev_out + (1.0 - still) * out
        self._prev_in, self._prev_out = frame, out
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def flicker(frames: list[np.ndarray]) -> float:
    """Mean absolute frame-to-frame difference (grey levels): on a static scene, pure flicker."""
    if len(frames) < 2:
        return 0.0
    return float(np.mean([np.abs(a.astype(np.int16) - b.astype(np.int16)).mean()
                          for a, b in zip(frames[:-1], frames[1:], strict=True)]))


def _decode(path: str | Path, fmt: str | None = None, max_frames: int | None = None) -> Iterator[np.ndarray]:
    import av

    with av.open(str(path), format=fmt) as src:
        for k, frame in enumerate(src.decode(video=0)):
            if max_frames is not None and k >= max_frames:
                return
            yield frame.to_ndarray(format="rgb24")


def _video_codec(container, rate, width: int, height: int):
    stream = container.add_stream("libx264", rate=rate)
    stream.width, stream.height = width, height
    # 4:2:0 needs even sizes; odd sizes keep every pixel with 4:4:4.
    stream.pix_fmt = "yuv420p" if width % 2 == 0 and height % 2 == 0 else "yuv444p"
    stream.options = {"crf": "18", "preset": "veryfast"}
    return stream


def stylize_video(client: Client, src: str | Path, dst: str | Path, style: Style = None, *,
                  model: str | None = None, in_flight: int = 4, stable: float = 0.0,
                  progress: bool = True, input_format: str | None = None, max_frames: int | None = None,
                  **options) -> VideoReport:
    """Stylize every frame of ``src`` into ``dst`` (same frame count, order, size and rate; audio copied)."""
    import av
    from tqdm import tqdm

    with av.open(str(src), format=input_format) as probe:
        vin = probe.streams.video[0]
        rate = vin.average_rate or vin.guessed_rate or Fraction(25)
        width, height = vin.codec_context.width, vin.codec_context.height
        total = max_frames or vin.frames or None
        has_audio = bool(probe.streams.audio)
    stabilizer = TemporalStabilizer(stable) if stable > 0 else None
    frames_in: list[np.ndarray] = []

    def source() -> Iterator[np.ndarray]:
        for f in _decode(src, input_format, max_frames):
            if stabilizer is not None:
                frames_in.append(f)
            yield f

    t0 = time.perf_counter()
    count = audio_packets = 0
    with av.open(str(dst), "w") as out:
        vout = _video_codec(out, rate, width, height)
        aout = None
        if has_audio:
            with av.open(str(src), format=input_format) as a:
                aout = out.add_stream_from_template(a.streams.audio[0])
        bar = tqdm(total=total, unit="frame", disable=not progress, desc="stylize")
        for styled in client.stylize_stream(source(), style, model=model, in_flight=in_flight, **options):
            if stabilizer is not None:
                styled = stabilizer(frames_in.pop(0), styled)
            for packet in vout.encode(av.VideoFrame.from_ndarray(styled, format="rgb24")):
                out.mux(packet)
            count += 1
            bar.update(1)
        for packet in vout.encode():
            out.mux(packet)
        seconds = time.perf_counter() - t0
        bar.set_postfix(fps=f"{count / seconds:.2f}")
        bar.close()
        if aout is not None:
            with av.open(str(src), format=input_format) as a:
                for packet in a.demux(a.streams.audio[0]):
                    if packet.dts is None:
                        continue
                    packet.stream = aout
                    out.mux(packet)
                    audio_packets += 1
    report = VideoReport(count, seconds, audio_packets)
    log.info("stylized %d frames in %.1fs (%.2f fps), %d audio packets copied", count, seconds, report.fps,
             audio_packets)
    return report

