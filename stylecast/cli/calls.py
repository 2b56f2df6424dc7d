"""Commands that call a server: stylize, models, stylize-video, stylize-stream, and the demo."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path


def add_client_args(p: argparse.ArgumentParser, timeout: float = 60.0) -> None:
    p.add_argument("--url", default="127.0.0.1:8001", help="gRPC address of a stylecast or Triton server")
    p.add_argument("--token", help="bearer token of a server started with --token")
    p.add_argument("--timeout", type=float, default=timeout,
                   help=f"seconds to wait for each answer (default {timeout:g})")


def _parse_blend(text: str | None) -> dict[str, float] | None:
    if not text:
        return None
    out = {}
    for part in text.split(","):
        name, _, weight = part.partition("=")
        out[name.strip()] = float(weight or 1.0)
    return out


class _LocalServer:
    """``--local``: the embedded server in this process on a free loopback port, serving the repository with
    ONNX Runtime (the same graphs and pixels as ``stylecast serve``), stopped on exit."""

    def __init__(self, repository: str, sidecar: bool = False) -> None:
        from stylecast.server.app import Server, ServerOptions

        if not Path(repository).is_dir():
            raise FileNotFoundError(f"no model repository at {repository!r} (give --model-repository)")
        logging.getLogger("stylecast.server").setLevel(logging.WARNING)  # its start-up log is not the answer
        self.server = Server(ServerOptions(model_repository=repository, port=0, metrics_port=None, sidecar=sidecar))

    def __enter__(self) -> str:
        return f"127.0.0.1:{self.server.start()}"

    def __exit__(self, *exc) -> None:
        self.server.stop(grace=0)


def _server_url(a: argparse.Namespace):
    """A context giving the address to call: ``--url``, or an in-process server with ``--local``."""
    from contextlib import nullcontext

    if not getattr(a, "local", False):
        return nullcontext(a.url)
    return _LocalServer(a.model_repository, sidecar=getattr(a, "keep_subject", False))


def _cmd_stylize(a: argparse.Namespace) -> int:
    from PIL import Image

    from stylecast.client import Client

    style = _parse_blend(a.blend) or a.style
    image = Image.open(a.input).convert("RGB")
    with _server_url(a) as url, Client(url, token=a.token, timeout=a.timeout) as c:
        if style is None:
            models = c.style_models()
            model = a.model or next(iter(models), None)
            if model is None or model not in models:
                raise ValueError(f"no style model {model!r} on the server: `stylecast models` lists them")
            raise ValueError(f"give --style (or --blend); {model}'s styles: {', '.join(models[model])}")
        out = c.stylize(image, style, model=a.model, strength=a.strength, keep_colors=a.keep_colors,
                        keep_subject=a.keep_subject)
    out.save(a.output)
    print(f"wrote {a.output} ({out.size[0]}x{out.size[1]})")
    return 0


def add_stylize(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("stylize", help="stylize an image through a running server, or in this process (--local)",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("input", help="photo to stylize (any format Pillow reads)")
    p.add_argument("-o", "--output", required=True, help="where to write the stylized image")
    p.add_argument("--style", help="style name (see `stylecast models`)")
    p.add_argument("--blend", help="blend styles, e.g. starry_night=0.7,great_wave=0.3")
    p.add_argument("--model", help="style model (default: the one holding the style)")
    p.add_argument("--strength", type=float, default=1.0, help="0 = photo, 1 = fully stylized")
    p.add_argument("--keep-colors", action="store_true", help="keep the photo's colours")
    p.add_argument("--keep-subject", action="store_true",
                   help="paint the background only: the subject (the server's segmentation technique) stays as in "
                   "the photo")
    p.add_argument("--local", action="store_true",
                   help="no server needed: run the model repository in this process with ONNX Runtime")
    p.add_argument("--model-repository", default="model_repository", help="the repository --local serves")
    add_client_args(p)
    p.set_defaults(func=_cmd_stylize)
    m = sub.add_parser("models", help="list the models of a running server")
    add_client_args(m)
    m.set_defaults(func=_cmd_models)


def _cmd_models(a: argparse.Namespace) -> int:
    from stylecast.client import Client

    with Client(a.url, token=a.token, timeout=a.timeout) as c:
        styles = c.style_models()
        for m in c.models():
            extra = f"  styles: {', '.join(styles[m.name])}" if m.name in styles else ""
            print(f"{m.name:24s} {m.version or '-':>3s} {m.state:12s} {m.reason}{extra}")
    return 0


def _cmd_demo(a: argparse.Namespace) -> int:
    """Start the embedded server, stylize a bundled photo with every shipped style, write, stop."""
    from PIL import Image

    from stylecast.client import Client
    from stylecast.client.imaging import caption
    from stylecast.nets.images import bundled_photos
    from stylecast.server.app import Server, ServerOptions

    photos = dict(bundled_photos())
    photo = photos.get(a.photo) or next(iter(photos.values()))
    server = Server(ServerOptions(model_repository=a.model_repository, port=0, metrics_port=None))
    port = server.start()
    try:
        with Client(f"127.0.0.1:{port}") as c:
            image = Image.open(photo).convert("RGB")
            image.thumbnail((a.size, a.size))
            models = c.style_models()
            model = a.model or next(iter(models))
            names = models[model]
            tiles = [image] + [c.stylize(image, s, model=model) for s in names]
    finally:
        server.stop()
    tiles = [caption(t, label) for t, label in zip(tiles, ["photo", *names], strict=True)]
    cols = min(3, len(tiles))
    rows = (len(tiles) + cols - 1) // cols
    w, h = image.size
    sheet = Image.new("RGB", (cols * w, rows * h), "white")
    for i, t in enumerate(tiles):
        sheet.paste(t, ((i % cols) * w, (i // cols) * h))
    sheet.save(a.output)
    print(f"wrote {a.output}: {photo.name} and its {len(tiles) - 1} styles from model '{model}'")
    return 0


def add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="serve model_repository, stylize a bundled photo in every style, stop")
    p.add_argument("-o", "--output", default="stylized.jpg")
    p.add_argument("--model-repository", default="model_repository")
    p.add_argument("--model")
    p.add_argument("--photo", default="sklearn_china", help="bundled photo name (see `stylecast data starter`)")
    p.add_argument("--size", type=int, default=512, help="long side of the photo")
    p.set_defaults(func=_cmd_demo)


def _cmd_video(a: argparse.Namespace) -> int:
    from stylecast.client import Client
    from stylecast.client.video import stylize_video

    style = _parse_blend(a.blend) or a.style
    with Client(a.url, token=a.token, timeout=a.timeout) as c:
        r = stylize_video(c, a.input, a.output, style, model=a.model, in_flight=a.in_flight, stable=a.stable,
                          input_format=a.format, max_frames=a.max_frames, strength=a.strength,
                          keep_colors=a.keep_colors)
    print(f"wrote {a.output}: {r.frames} frames in {r.seconds:.1f}s ({r.fps:.2f} fps), "
          f"{r.audio_packets} audio packets copied")
    return 0


def add_video(sub: argparse._SubParsersAction) -> None:
    for name, helptext, src in (
        ("stylize-video", "stylize a video file (audio kept)", "input video file"),
        ("stylize-stream", "stylize a live source: a camera (/dev/video0 --format v4l2) or an FFmpeg URL",
         "camera device or FFmpeg input URL"),
    ):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("input", help=src)
        p.add_argument("-o", "--output", required=True, help="output video file")
        p.add_argument("--style")
        p.add_argument("--blend", help="e.g. starry_night=0.7,great_wave=0.3")
        p.add_argument("--model")
        p.add_argument("--in-flight", type=int, default=4, help="frames in flight (pipelining)")
        p.add_argument("--stable", type=float, default=0.0, help="temporal stabilization strength in [0, 1)")
        p.add_argument("--strength", type=float, default=1.0)
        p.add_argument("--keep-colors", action="store_true")
        p.add_argument("--format", help="FFmpeg input format (v4l2, lavfi, ...)")
        p.add_argument("--max-frames", type=int, help="stop after this many frames (live sources)")
        add_client_args(p)
        p.set_defaults(func=_cmd_video)
