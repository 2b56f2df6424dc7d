"""One more style for a trained multi-style network, in minutes (Dumoulin et al. 2017, section 4.3).

A conditional-instance-norm network keeps each style in one row of gamma and beta per normalization layer;
the convolutions are shared. A new painting gets a new row, initialised at the mean of the others, and only
that row is trained, with the perceptual losses the network was trained with (its checkpoint records them)
and the serving margin. The convolutions and the other styles' rows stay bit-identical, so the old styles
answer exactly the pixels they did. Removing a style drops its row; renaming only changes its name.
"""

from __future__ import annotations

import logging
from dataclasses import fields
from pathlib import Path

import torch

from .checkpoint import load_network
from .networks import TransformerNet
from .trainer import TrainConfig, Trainer

log = logging.getLogger(__name__)

TABLES = ("cin.gamma", "cin.beta")
# From the base network's recipe; everything else (steps, lr, batch, crops) is add-style's own.
RECIPE = ("loss_network", "content_layers", "content_weight", "style_weight", "tv_weight", "style_size", "margin",
          "vgg_weights", "content_colour", "droplet_weight")


def tables(net: TransformerNet) -> list[tuple[str, torch.nn.Parameter]]:
    return [(n, p) for n, p in net.named_parameters() if n.endswith(TABLES)]


def _rebuilt(net: TransformerNet, n_styles: int, table) -> TransformerNet:
    """A copy of ``net`` with ``n_styles`` rows per table, each table made by ``table(old_rows)``."""
    arch = net.arch
    new = TransformerNet(n_styles, arch["width"], arch["residual_blocks"], arch["edge_kernel"])
    state = {k: (table(v) if k.endswith(TABLES) else v) for k, v in net.state_dict().items()}
    new.load_state_dict(state)
    return new


def with_new_style(net: TransformerNet) -> TransformerNet:
    """``net`` with one more style, last, at the mean of the others' rows (a neutral start)."""
    if net.n_styles < 2:
        raise ValueError("a style can be added to a multi-style (conditional instance norm) network only")
    return _rebuilt(net, net.n_styles + 1, lambda t: torch.cat([t, t.mean(0, keepdim=True)]))


def without_style(net: TransformerNet, index: int) -> TransformerNet:
    """``net`` without style ``index``; the other rows are kept as they are."""
    if net.n_styles < 3:
        raise ValueError("a multi-style network keeps at least two styles")
    keep = [i for i in range(net.n_styles) if i != index]
    return _rebuilt(net, net.n_styles - 1, lambda t: t[keep])


def recipe(base: str | Path) -> dict:
    """The loss settings the base network was trained with (the defaults where it recorded none)."""
    saved = torch.load(base, map_location="cpu", weights_only=False).get("config", {})
    return {k: saved[k] for k in RECIPE if k in saved}


class StyleAdder(Trainer):
    """Trains the new row of every table of ``base`` + one style; nothing else gets a gradient.

    With ``relearn``, the style named in ``cfg`` is one ``base`` already has: its own row trains, from its
    current values, against ``cfg``'s painting (a new crop of it, say, or other loss weights), and every other
    row and weight stays bit-identical."""

    def __init__(self, cfg: TrainConfig, base: str | Path, relearn: bool = False) -> None:
        net, names = load_network(base)
        if len(cfg.styles) != 1:
            raise ValueError("add one painting at a time")
        cfg.width, cfg.residual_blocks, cfg.edge_kernel = (net.arch[k] for k in ("width", "residual_blocks",
                                                                                 "edge_kernel"))
        cfg.teacher = None
        super().__init__(cfg)  # loss network, the painting's Gram targets, data, run folder
        name = cfg.names()[0]
        if relearn and name not in names:
            raise ValueError(f"the network has no style named {name!r} to relearn: it has {', '.join(names)}")
        if not relearn and name in names:
            raise ValueError(f"the network already has a style named {name!r}")
        self.net = (net if relearn else with_new_style(net)).to(self.device)
        self.net.requires_grad_(False)
        self.n_styles = self.net.n_styles
        self.new = names.index(name) if relearn else self.n_styles - 1
        self.style_names = list(names) if relearn else [*names, name]
        self.content_weights = self._content_weights(cfg)  # indexed by the full network's rows
        rows = [p for _, p in tables(self.net)]
        for p in rows:
            p.requires_grad_(True)
            p.register_hook(self._only_new_row)
        self.opt = torch.optim.Adam(rows, lr=cfg.lr)
        self._net_fwd = torch.compile(self.net) if cfg.compile else self.net
        if cfg.droplet_weight:
            self._watch_droplets()  # on the base network, which replaced the one the Trainer built

    def _only_new_row(self, grad: torch.Tensor) -> torch.Tensor:
        mask = torch.zeros_like(grad)
        mask[self.new] = 1
        return grad * mask

    def draw_styles(self, n: int) -> torch.Tensor:
        return torch.full((n,), self.new, dtype=torch.long)

    def gram_rows(self, idx: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(idx)  # one painting: its targets are row 0

    def set_lr(self) -> float:
        for group in self.opt.param_groups:
            group["lr"] = self.cfg.lr
        return self.cfg.lr

    def preview(self) -> tuple[torch.Tensor, torch.Tensor]:
        """A fixed training photo and the new style on it, as served ([1, 3, H, W], 0..255)."""
        from .data import resize_square
        from .networks import one_hot

        x = resize_square(self.data.images[0], self.cfg.image_size)[None].to(self.device)
        with torch.no_grad():
            y = self.served(self.net, x, one_hot(torch.tensor([self.new]), self.n_styles).to(self.device))
        return x, y.clamp(0, 255)

    def sample(self) -> None:
        """Samples show the new style alone (the others are unchanged)."""
        from PIL import Image

        x, y = self.preview()
        grid = torch.cat([x, y], dim=3)[0].permute(1, 2, 0).byte().cpu().numpy()
        (self.out / "samples").mkdir(exist_ok=True)
        Image.fromarray(grid).save(self.out / "samples" / f"step{self.step:06d}.png")


def adder_config(painting: str | Path, name: str, base: str | Path, data: str | Path, out: str | Path,
                 **overrides) -> TrainConfig:
    """Add-style's training settings: the base network's losses, then ``overrides``."""
    allowed = {f.name for f in fields(TrainConfig)}
    unknown = set(overrides) - allowed
    if unknown:
        raise ValueError(f"unknown settings {sorted(unknown)}")
    settings = {"lr": 1e-2, "batch_size": 4, "image_size": 192, "checkpoint_every": 25, "sample_every": 0,
                "log_every": 5, **recipe(base), **overrides}
    return TrainConfig(styles=[str(painting)], style_names=[name], data=str(data), out=str(out), **settings)


def take_rows(base: str | Path, sources: dict[str, str | Path], out: str | Path) -> Path:
    """``base``'s weights with the rows of the named styles taken from other files of the same network (each
    relearned alone, say); writes ``out`` and returns it. Everything else must be bit-identical."""
    state = torch.load(base, map_location="cpu", weights_only=False)
    names = list(state["style_names"])
    for style, path in sources.items():
        other = torch.load(path, map_location="cpu", weights_only=False)
        row = names.index(style)
        for key, value in other["model"].items():
            if key.endswith(TABLES):
                state["model"][key][row] = value[row]
            elif not torch.equal(value, state["model"][key]):
                raise ValueError(f"{path} differs from {base} outside the style rows ({key})")
    state.pop("optimizer", None)
    state["relearned"] = {**state.get("relearned", {}), **{s: str(p) for s, p in sources.items()}}
    torch.save(state, out)
    return Path(out)
