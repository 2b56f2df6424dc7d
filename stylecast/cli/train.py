"""`stylecast train` (its options built from TrainConfig's fields) and `stylecast data`."""

from __future__ import annotations

import argparse
import logging

log = logging.getLogger("stylecast")


def _cmd_train(a: argparse.Namespace) -> int:
    from stylecast.training.config import from_arguments
    from stylecast.training.trainer import Trainer

    cfg = from_arguments(a)
    if not cfg.styles and not cfg.teacher:
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


def _relearn(a: argparse.Namespace, cfg) -> int:
    """Train one style's rows of the --resume network against its --style painting; all else stays."""
    from stylecast.training.add_style import StyleAdder, recipe
    from stylecast.training.config import given, with_recipe

    if not a.resume or len(cfg.styles) != 1:
        log.error("--relearn takes the trained network as --resume and the style's painting as one --style")
        return 2
    with_recipe(cfg, recipe(a.resume), given(a))
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


def add_train(sub: argparse._SubParsersAction) -> None:
    from stylecast.training.config import add_arguments

    p = sub.add_parser("train", help="train a feed-forward style network (several --style: one CIN network)",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_arguments(p)
    run = p.add_argument_group("this run")
    run.add_argument("--relearn", metavar="STYLE",
                     help="train only this style's normalization rows of the --resume network, from their current "
                          "values, against the one --style painting, with the network's own loss settings where "
                          "no option sets them (--steps counts this run's steps)")
    run.add_argument("--resume", help="checkpoint.pt (exact) or weights.pt (warm start) to continue from")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_train)


def add_data(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="prepare data sets")
    dsub = p.add_subparsers(dest="data_cmd", required=True)
    s = dsub.add_parser("starter", help="gather the natural photos bundled in installed packages")
    s.add_argument("dir")
    s.add_argument("--holdout", type=int, default=12, help="photos held out for evaluation")
    s.set_defaults(func=_cmd_data)
