"""Commands that write the model repository: export, add-style, remove-style, rename-style, configure."""

from __future__ import annotations

import argparse


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


def add_configure(sub: argparse._SubParsersAction) -> None:
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


def add_export(sub: argparse._SubParsersAction) -> None:
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


def add_add_style(sub: argparse._SubParsersAction) -> None:
    from stylecast.training.config import ADD_STYLE_STEPS

    p = sub.add_parser("add-style", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                       help="teach a multi-style model a new painting (only its new normalization rows train) and "
                       "write the model's next version")
    p.add_argument("painting", help="the painting's image file")
    p.add_argument("--model", required=True, help="multi-style model in the repository (e.g. starter8)")
    p.add_argument("--name", help="style name (default: the file's stem)")
    p.add_argument("--repository", default="model_repository", help="model repository folder")
    p.add_argument("--steps", type=int, default=ADD_STYLE_STEPS, help="training steps")
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


def add_remove_rename(sub: argparse._SubParsersAction) -> None:
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
