"""`stylecast explain`: any technique of the sidecar, driven by its served model config."""

from __future__ import annotations

import argparse
import logging
import sys

from .calls import add_client_args

log = logging.getLogger("stylecast")


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


ARGV: list[str] = []  # the command line main() parses, for the help action that reads options after it


class _ExplainHelp(argparse.Action):
    """-h/--help of explain: the options, then the technique's inputs and parameters read from the server."""

    def __init__(self, option_strings, dest, **kw) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help=kw.get("help"))

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        parser.print_help()
        technique = getattr(namespace, "technique", None)
        if technique:
            pre = argparse.ArgumentParser(add_help=False)
            add_client_args(pre)
            client = pre.parse_known_args(ARGV or sys.argv[1:])[0]
            try:
                print("\n" + "\n".join(served_parameters(client.url, technique, client.token)))
            except Exception as e:  # noqa: BLE001 - help must print whatever the server's state
                print(f"\n({technique}'s parameters come from a running server: none answered at {client.url} "
                      f"({type(e).__name__}); start one with `stylecast serve --sidecar`)")
        parser.exit()


def add_explain(sub: argparse._SubParsersAction) -> None:
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
    add_client_args(p, timeout=300.0)
    p.set_defaults(func=_cmd_explain)
