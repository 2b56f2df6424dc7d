"""The options of a training run, declared once: each TrainConfig field carries its command-line help in its
metadata, and :func:`add_arguments` builds ``stylecast train``'s options from the fields (defaults shown).
Torch-free, so the command line stays light."""

from __future__ import annotations

import argparse
import logging
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path

from stylecast.contract import SERVING_MARGIN

log = logging.getLogger(__name__)

LOSS_NETWORK_NAMES = ("efficientnet-lite0", "vgg16", "vgg19")  # nets.perceptual.LOSS_NETWORKS
LR_SCHEDULES = ("constant", "cosine")
# What reaches the quality target (style ratio <= 0.25, content kept >= 50% on held-out photos) within about
# 10 minutes on a 2-core CPU (2.7 s a step at 192 px, batch 4, on an AVX2 EPYC): see the README's add-style table.
# Trials on a held-out painting: 180 steps at lr 5e-3 gave ratio 0.209, at lr 1e-2 0.204 (content kept 75%).
ADD_STYLE_STEPS = 160  # steps of a new style's rows (add-style, learn_style)


def option(default=MISSING, help: str = "", *, flag: str | None = None, choices: tuple | None = None,
           repeat: bool = False, metavar: str | None = None, parse=None):
    """A TrainConfig field and its command-line option: ``--flag`` (default: the field's name, dashed);
    ``repeat``: the option may be given several times, each value appended (or, with ``parse``, each
    parsed into a (key, value) pair of a dict)."""
    meta = {"help": help, "flag": flag, "choices": choices, "repeat": repeat, "metavar": metavar, "parse": parse}
    if repeat:
        return field(default_factory=dict if parse else list, metadata=meta)
    return field(default=default, metadata=meta)


def named_weight(text: str, example: str) -> tuple[str, float]:
    """'block10=0.25' -> ('block10', 0.25)."""
    name, sep, value = text.partition("=")
    try:
        if sep and name:
            return name, float(value)
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(f"{text!r}: use NAME=WEIGHT, e.g. {example}")


def layer_weight(text: str) -> tuple[str, float]:
    return named_weight(text, "block10=0.25")


def style_name_weight(text: str) -> tuple[str, float]:
    return named_weight(text, "composition_viii=2")


@dataclass(kw_only=True)
class TrainConfig:
    styles: list[str] = option(help="style image; repeat for a multi-style model (not needed with --teacher)",
                               flag="--style", repeat=True)
    data: str = option(help="folder of content images (recursive)")
    out: str = option("runs/style", "run folder: checkpoint.pt, weights.pt, samples/, losses.json")
    style_names: list[str] = option(help="style name (default: file stem); repeat in order", flag="--name",
                                    repeat=True)
    content_weight: float = option(10.0, "10 suits efficientnet-lite0 (4 lost the subject: content kept 25%%); "
                                   "the VGG16 starter used 4")
    # A style whose strokes have room to spare (a low Gram ratio) can keep more of the subject than one whose
    # texture is already at its limit; one global weight has to suit the style with the least room.
    content_weights: dict[str, float] = option(help="multiplier of the content weight for one style's samples "
                                               "(repeat; others 1), e.g. composition_viii=2",
                                               flag="--content-weight-of", repeat=True, metavar="STYLE=WEIGHT",
                                               parse=style_name_weight)
    style_weight: float = option(6.0, "6 suits efficientnet-lite0; the VGG16 starter used 1.5")
    tv_weight: float = option(20.0, "total-variation weight")
    style_size: int = option(384, "long side of the style image (about 1.5x the crop size)")
    image_size: int = option(256, "training crop size")
    batch_size: int = option(4, "crops per step")
    steps: int = option(20000, "total steps (a resumed run continues up to this)")
    lr: float = option(1e-3, "Adam learning rate")
    # Each style's CIN row only sees 1/N of the samples; a larger step lets styles separate sooner.
    style_lr_scale: float = option(10.0, "learning-rate multiplier for the per-style CIN tables")
    # A function of the step alone, so resume stays exact and a fine-tune can start its decay at its first step.
    lr_schedule: str = option("constant", "cosine: decay from --lr at --lr-decay-start to --lr x --lr-final at "
                              "--steps", choices=LR_SCHEDULES)
    lr_decay_start: int = option(0, "step where the cosine decay begins")
    lr_final: float = option(0.05, "final learning rate as a fraction of --lr")
    seed: int = option(0, "random seed")
    device: str = option("auto", "cpu, cuda, cuda:N or auto")
    precision: str = option("auto", "auto: bf16 on CUDA or AMX CPUs, else fp32",
                            choices=("auto", "fp32", "bf16", "fp16"))
    compile: bool = option(False, "torch.compile the networks")
    width: float = option(1.0, "channel width multiplier (1.0, 0.5, ...)")
    residual_blocks: int = option(5, "residual blocks at 1/4 resolution")
    edge_kernel: int = option(9, "side of the first and last convolutions (full resolution): 9 as Johnson; 3 for "
                              "a fast model", choices=(3, 5, 7, 9))
    norm: str = option("instance", "normalization of a single-style network (batch: only to compare; instance "
                       "norm is better, docs/training.md)", choices=("instance", "batch"))
    # Without the margin the network learns to paint high-contrast lines along the borders, which lower the
    # Gram loss but are never served.
    margin: int = option(SERVING_MARGIN, "replicated pixels around each crop, cropped off before the losses, as "
                         "the server does (0: the bare network, which learns to paint lines along the borders)")
    checkpoint_every: int = option(200, "steps between checkpoints")
    sample_every: int = option(500, "steps between sample pictures (0: none)")
    log_every: int = option(10, "steps between entries of losses.json")
    time_limit: float | None = option(None, "seconds of training after which the run saves and stops (resume "
                                      "continues it)")
    loss_network: str = option("efficientnet-lite0", "perceptual loss network (EfficientNet-Lite0 paints strokes; "
                               "VGG16 from HED gives pastel)", choices=LOSS_NETWORK_NAMES)
    # The content loss is the layers' mean relative error: a deeper layer keeps what the subject is and leaves
    # its fine texture free to take the painting's.
    content_layers: list[str] = option(help="content layer of the loss network; repeat for several (their mean); "
                                       "default: the network's own (block2 for efficientnet-lite0, relu2_2 for VGG)",
                                       flag="--content-layer", repeat=True)
    # The SSIM and edge measures read grey images: a content loss on luminance leaves the palette to the style
    # loss alone, so colour moves toward the painting's without costing the subject's structure.
    content_colour: str = option("rgb", "what the content loss compares: rgb, or luminance (both images as grey, "
                                 "so colour is the style loss's alone)", choices=("rgb", "luminance"))
    vgg_weights: str | None = option(None, "weights file of a VGG loss network (default: torch hub cache, else "
                                     "bundled)")
    # Without style images the loss is the pixel MSE to the teacher's output alone (no loss network); with them,
    # the perceptual losses plus teacher_weight x that MSE: the MSE alone gives a small network the palette but
    # blurs the strokes the Gram loss keeps.
    teacher: str | None = option(None, "trained checkpoint to distill: learn its outputs (e.g. at --width 0.5); "
                                 "with --style too, on top of the perceptual losses")
    teacher_weight: float = option(1000.0, "weight of the pixel MSE (0..1 scale, about 0.01) to the teacher when "
                                   "the perceptual losses (about 20) are on")
    spot_weight: float = option(0.0, "weight of the loss on yellow spots the photo lacks; 0: off (it prices "
                                "yellow only: composition_viii's stamps turned purple under it, docs/training.md)")
    droplet_weight: float = option(0.0, "weight of the loss on droplets: one spot where the deep layers' channels "
                                   "spike together, which the decoder paints as a round stamp "
                                   "(nets.losses.droplet_loss); 0: off")
    # Lowering the deep layers' weight takes motif-level statistics out of the target and leaves strokes and palette.
    style_layer_weights: dict[str, float] = option(help="multiplier of one style layer's loss (repeat; others 1), "
                                                   "e.g. block10=0.25", flag="--style-layer-weight", repeat=True,
                                                   metavar="LAYER=WEIGHT", parse=layer_weight)

    def names(self) -> list[str]:
        return self.style_names or [Path(s).stem for s in self.styles]


_TYPES = {"int": int, "float": float, "str": str}


def add_arguments(p: argparse.ArgumentParser) -> None:
    """One option per TrainConfig field, from its metadata. An option not given stays out of the namespace
    (its default is in the help), so :func:`given` can tell what the command line chose."""
    for f in fields(TrainConfig):
        m = f.metadata
        kwargs: dict = {"help": m["help"] or None, "dest": f.name, "default": argparse.SUPPRESS}
        flag = m["flag"] or "--" + f.name.replace("_", "-")
        if m["repeat"]:
            kwargs.update(action="append", type=m["parse"] or str,
                          metavar=m["metavar"] or flag[2:].replace("-", "_").upper())
        elif f.type == "bool":
            kwargs.update(action="store_true")
        elif f.default is MISSING:
            kwargs.update(type=_TYPES[f.type], required=True)
        else:
            kwargs.update(type=_TYPES[f.type.split(" |")[0]])
            kwargs["help"] = f"{m['help']} (default: {f.default})" if m["help"] else f"default: {f.default}"
        if m["choices"]:
            kwargs["choices"] = m["choices"]
        p.add_argument(flag, **kwargs)


def given(a: argparse.Namespace) -> set[str]:
    """The TrainConfig fields whose options the command line gave."""
    return {f.name for f in fields(TrainConfig) if hasattr(a, f.name)}


def with_recipe(cfg: TrainConfig, recipe: dict, chosen: set[str]) -> TrainConfig:
    """``cfg`` with a trained network's loss settings (``recipe``), except those in ``chosen`` (given on the
    command line), which win; each of those is logged."""
    for key, value in recipe.items():
        if key not in chosen:
            setattr(cfg, key, value)
        elif getattr(cfg, key) != value:
            log.info("--%s %s instead of the network's %s", key.replace("_", "-"), getattr(cfg, key), value)
    return cfg


def from_arguments(a: argparse.Namespace) -> TrainConfig:
    """The TrainConfig that ``add_arguments``' options parsed into (the field's default where not given)."""
    values = {}
    for f in fields(TrainConfig):
        if not hasattr(a, f.name):
            continue
        v = getattr(a, f.name)
        if f.metadata["repeat"]:
            v = dict(v) if f.metadata["parse"] else list(v)
        values[f.name] = v
    return TrainConfig(**values)
