"""Styles of a served model: add one from a painting, remove one, rename one, each as the next version of
the model in its repository (the server picks it up in poll mode, or on an explicit load; so does Triton).

``add_style`` finds the weights the model was exported from (the config's ``stylecast_weights``, else
``checkpoints/<model>.pt`` beside the repository, else ``checkpoint=``), trains the new style's rows only
(:mod:`stylecast.training.add_style`), and exports N+1 styles with the export's parity checks, int8 again
where the model was int8. The run folder holds a resumable checkpoint: the same command continues.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from google.protobuf import text_format
from stylecast.training.config import ADD_STYLE_STEPS
from tritonclient.grpc import model_config_pb2 as mc

from stylecast.contract import PRECISION_PARAMETER, STYLES_PARAMETER, WEIGHTS_PARAMETER, parse_styles

from .onnx_export import Parity, export_to_repository, model_versions

log = logging.getLogger(__name__)

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_\-]{0,63}")


class Stopped(Exception):
    """The caller stopped the job (cancel or deadline); nothing was written."""


@dataclass
class StyleChange:
    model: str
    version: int
    styles: list[str]
    onnx: Path
    parity: list[Parity] = field(default_factory=list)
    seconds: float = 0.0
    steps: int = 0
    history: list[dict] = field(default_factory=list)


def check_name(name: str, what: str = "style name") -> str:
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise ValueError(f"invalid {what} {name!r}: use 1-64 letters, digits, '_' or '-', starting with a letter "
                         "or digit")
    return name


def read_config(model_dir: Path) -> mc.ModelConfig:
    path = model_dir / "config.pbtxt"
    if not path.is_file():
        raise FileNotFoundError(f"no model {model_dir.name!r} in {model_dir.parent} (no config.pbtxt)")
    return text_format.Parse(path.read_text(), mc.ModelConfig())


def styles_of(cfg: mc.ModelConfig) -> list[str]:
    if STYLES_PARAMETER not in cfg.parameters:
        raise ValueError(f"model {cfg.name!r} is not a multi-style model (its config lists no styles)")
    return parse_styles(cfg.parameters[STYLES_PARAMETER].string_value)


def find_weights(model_dir: Path, checkpoint: str | Path | None = None) -> Path:
    """The weights ``model_dir`` was exported from."""
    if checkpoint is not None:
        return Path(checkpoint)
    cfg = read_config(model_dir)
    candidates = []
    if WEIGHTS_PARAMETER in cfg.parameters:
        candidates.append(model_dir / cfg.parameters[WEIGHTS_PARAMETER].string_value)
    candidates.append(model_dir.resolve().parent.parent / "checkpoints" / f"{model_dir.name}.pt")
    for c in candidates:
        if c.is_file():
            return c
    raise FileNotFoundError(f"the weights of model {model_dir.name!r} were not found (looked at "
                            f"{', '.join(str(c) for c in candidates)}): give --checkpoint")


def shared_styles_difference(old_onnx: Path, new_onnx: Path, photos) -> int:
    """The largest level difference, on ``photos`` (uint8 HWC arrays), between two versions of a style model
    on the styles they share: the leading rows, as add-style appends one and remove-style drops one."""
    import numpy as np
    import onnxruntime as ort

    from stylecast.contract import IMAGE_INPUT, STYLE_WEIGHTS_INPUT

    a, b = (ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]) for p in (old_onnx, new_onnx))
    n_a, n_b = (next(i.shape[1] for i in s.get_inputs() if i.name == STYLE_WEIGHTS_INPUT) for s in (a, b))
    worst = 0
    for photo in photos:
        for i in range(min(n_a, n_b)):
            ya = a.run(None, {IMAGE_INPUT: photo[None], STYLE_WEIGHTS_INPUT: np.eye(n_a, dtype=np.float32)[i:i + 1]})
            yb = b.run(None, {IMAGE_INPUT: photo[None], STYLE_WEIGHTS_INPUT: np.eye(n_b, dtype=np.float32)[i:i + 1]})
            worst = max(worst, int(np.abs(ya[0].astype(int) - yb[0]).max()))
    return worst


def _export(weights: Path, model_dir: Path, cfg: mc.ModelConfig) -> tuple[Path, list[Parity]]:
    """The next version of ``model_dir``; an int8 model keeps its current graph's activation scales, so the
    styles the versions share answer the same pixels (a fresh calibration over the new set of styles moved
    them by up to 85 levels)."""
    int8 = cfg.parameters[PRECISION_PARAMETER].string_value == "int8" if PRECISION_PARAMETER in cfg.parameters \
        else False
    versions = model_versions(model_dir)
    current = model_dir / str(versions[-1]) / "model.onnx" if versions else None
    scales_of = current if int8 and current is not None and current.is_file() else None
    return export_to_repository(weights, model_dir.name, model_dir.parent, cfg.max_batch_size, int8=int8,
                                base_config=cfg, int8_scales_of=scales_of)


def add_style(painting: str | Path, model: str, repository: str | Path = "model_repository", name: str | None = None,
              steps: int = ADD_STYLE_STEPS, checkpoint: str | Path | None = None, data: str | Path | None = None,
              out: str | Path | None = None, progress: bool = True,
              on_step: Callable[[int, dict, Callable], bool] | None = None, **settings) -> StyleChange:
    """Teach ``model`` the style of ``painting`` and write it as the model's next version.

    ``on_step(step, losses, preview)`` is called after every step (``preview()`` gives the new style on a
    training photo, [1, 3, H, W]); returning False stops the job (:class:`Stopped`), leaving the repository
    as it was. ``settings`` override training settings (``device``, ``lr``,
    ``image_size``, ``batch_size``, ...)."""
    from stylecast.training.add_style import StyleAdder, adder_config

    model_dir = Path(repository) / check_name(model, "model name")
    cfg = read_config(model_dir)
    old = styles_of(cfg)
    name = check_name(name or Path(painting).stem.lower().replace(" ", "_"))
    if name in old:
        raise ValueError(f"model {model!r} already has a style named {name!r}: pick another --name")
    base = find_weights(model_dir, checkpoint)
    run = Path(out or Path("runs") / "add_style" / f"{model}-{name}")
    t0 = time.perf_counter()
    adder = StyleAdder(adder_config(painting, name, base, data or default_photos(), run, steps=steps, **settings),
                       base)
    if adder.n_styles != len(old) + 1:
        raise ValueError(f"the weights {base} hold {adder.n_styles - 1} styles, the config of {model!r} {len(old)}")
    adder.style_names = [*old, name]  # the config's names are the served ones (a rename changes only them)
    if (run / "checkpoint.pt").is_file():
        adder.resume(run / "checkpoint.pt")
    if on_step is not None:
        adder.on_step = lambda step, losses: on_step(step, losses, lambda: adder.preview()[1])
    history = adder.fit(progress=progress)
    if adder.step < steps:
        raise Stopped(f"stopped at step {adder.step} of {steps}; nothing was written")
    weights = adder.out / "weights.pt"
    onnx, parity = _export(weights, model_dir, cfg)
    version = int(onnx.parent.name)
    log.info("model %s version %d: %d styles, %s added in %.0f s", model, version, len(old) + 1, name,
             time.perf_counter() - t0)
    return StyleChange(model, version, [*old, name], onnx, parity, time.perf_counter() - t0, adder.step, history)


def remove_style(model: str, style: str, repository: str | Path = "model_repository",
                 checkpoint: str | Path | None = None, out: str | Path | None = None) -> StyleChange:
    """The next version of ``model`` without ``style`` (its rows dropped; the others answer the same pixels)."""
    from stylecast.training.add_style import without_style
    from stylecast.training.checkpoint import load_network

    model_dir = Path(repository) / check_name(model, "model name")
    cfg = read_config(model_dir)
    old = styles_of(cfg)
    if style not in old:
        raise ValueError(f"model {model!r} has no style {style!r}; its styles: {', '.join(old)}")
    base = find_weights(model_dir, checkpoint)
    net, _ = load_network(base)
    if net.n_styles != len(old):
        raise ValueError(f"the weights {base} hold {net.n_styles} styles, the config of {model!r} {len(old)}")
    state = torch.load(base, map_location="cpu", weights_only=False)
    smaller = without_style(net, old.index(style))
    state.update(model=smaller.state_dict(), n_styles=smaller.n_styles, style_names=[n for n in old if n != style])
    weights = Path(out or Path("runs") / "remove_style" / f"{model}-{style}") / "weights.pt"
    weights.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, weights)
    onnx, parity = _export(weights, model_dir, cfg)
    return StyleChange(model, int(onnx.parent.name), state["style_names"], onnx, parity)


def rename_style(model: str, old_name: str, new_name: str, repository: str | Path = "model_repository") -> list[str]:
    """Rename a style in the config (the weights' rows stay where they are); returns the new style list."""
    model_dir = Path(repository) / check_name(model, "model name")
    cfg = read_config(model_dir)
    styles = styles_of(cfg)
    if old_name not in styles:
        raise ValueError(f"model {model!r} has no style {old_name!r}; its styles: {', '.join(styles)}")
    if check_name(new_name) in styles:
        raise ValueError(f"model {model!r} already has a style named {new_name!r}")
    styles = [new_name if s == old_name else s for s in styles]
    cfg.parameters[STYLES_PARAMETER].string_value = ",".join(styles)
    tmp = model_dir / ".config.pbtxt.tmp"
    tmp.write_text(text_format.MessageToString(cfg))
    tmp.replace(model_dir / "config.pbtxt")
    return styles


def default_photos() -> Path:
    """Training photos: the bundled starter set (its training split), gathered once."""
    from stylecast.training.data import gather_starter

    root = Path.home() / ".cache" / "stylecast" / "starter"
    train = root / "train"
    if not train.is_dir() or not any(train.iterdir()):
        gather_starter(root)
    return train


def stop_when(event: threading.Event | None, deadline: float | None = None) -> Callable[..., bool]:
    """An ``on_step`` that stops the job when ``event`` is set or ``deadline`` (time.monotonic) passes."""
    def go_on(step: int, losses: dict, preview=None) -> bool:
        return not (event is not None and event.is_set()) and (deadline is None or time.monotonic() < deadline)
    return go_on
