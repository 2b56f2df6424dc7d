"""The one command-line entry point. Subcommands import their component lazily (the client stays light)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable

log = logging.getLogger("stylecast")


def _cmd_train(a: argparse.Namespace) -> int:
    from stylecast.training.trainer import TrainConfig, Trainer

    cfg = TrainConfig(
        styles=a.style, data=a.data, out=a.out, style_names=a.name or [],
        content_weight=a.content_weight, style_weight=a.style_weight, tv_weight=a.tv_weight,
        style_size=a.style_size, image_size=a.image_size, batch_size=a.batch_size, steps=a.steps,
        lr=a.lr, seed=a.seed, device=a.device, precision=a.precision, compile=a.compile,
        width=a.width, checkpoint_every=a.checkpoint_every, sample_every=a.sample_every,
        vgg_weights=a.vgg_weights,
    )
    trainer = Trainer(cfg)
    if a.resume:
        trainer.resume(a.resume)
    trainer.fit(progress=not a.quiet)
    log.info("done at step %d; checkpoint in %s", trainer.step, trainer.out / "checkpoint.pt")
    return 0


def _cmd_data(a: argparse.Namespace) -> int:
    from stylecast.training.data import gather_starter

    train, evald = gather_starter(a.dir, holdout=a.holdout)
    print(f"train photos in {train}\neval photos in {evald}")
    return 0


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a feed-forward style network (several --style: one CIN network)")
    p.add_argument("--style", action="append", required=True, help="style image; repeat for a multi-style model")
    p.add_argument("--name", action="append", help="style name (default: file stem); repeat in order")
    p.add_argument("--data", required=True, help="folder of content images (recursive)")
    p.add_argument("--out", default="runs/style", help="run folder: checkpoint.pt, weights.pt, samples/, losses.json")
    p.add_argument("--content-weight", type=float, default=1.0)
    p.add_argument("--style-weight", type=float, default=5.0)
    p.add_argument("--tv-weight", type=float, default=20.0)
    p.add_argument("--style-size", type=int, default=384, help="long side of the style image")
    p.add_argument("--image-size", type=int, default=256, help="training crop size")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--steps", type=int, default=20000, help="total steps (a resumed run continues up to this)")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"])
    p.add_argument("--compile", action="store_true", help="torch.compile the networks")
    p.add_argument("--width", type=float, default=1.0, help="channel width multiplier (1.0, 0.5, ...)")
    p.add_argument("--checkpoint-every", type=int, default=200)
    p.add_argument("--sample-every", type=int, default=500)
    p.add_argument("--vgg-weights", help="VGG16 weights file (default: torch hub cache, else bundled)")
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


REGISTRARS: list[Callable[[argparse._SubParsersAction], None]] = [_add_train, _add_data]


def build_parser() -> argparse.ArgumentParser:
    from stylecast import __version__

    parser = argparse.ArgumentParser(prog="stylecast", description=__doc__)
    parser.add_argument("--version", action="version", version=f"stylecast {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="cmd", required=True)
    for register in REGISTRARS:
        register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
