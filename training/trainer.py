"""The training loop: perceptual losses, bf16 autocast, optional torch.compile, exact resume."""

from __future__ import annotations

import json
import logging
import math
import random
import time
from contextlib import nullcontext
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from stylecast.nets.images import to_tensor
from stylecast.nets.losses import content_loss, droplet_loss, gram_matrix, luminance, spot_loss, style_loss, tv_loss
from stylecast.nets.perceptual import LossNetwork, default_layers, loss_network, training_layers
from torch.nn import functional as F

from stylecast.contract import STRIDE
from stylecast.sysinfo import cpu_has_amx

from .checkpoint import load_network
from .config import LR_SCHEDULES, TrainConfig
from .data import ImageFolder, Prefetcher, load_painting, painting_mask, resize_square
from .networks import TransformerNet, droplet_norms, one_hot

log = logging.getLogger(__name__)


def lr_factor(cfg: TrainConfig, step: int) -> float:
    """Multiplier of the base learning rates for the step taken after `step` completed steps."""
    if cfg.lr_schedule == "constant" or step < cfg.lr_decay_start:
        return 1.0
    t = min(1.0, (step - cfg.lr_decay_start) / max(1, cfg.steps - cfg.lr_decay_start))
    return cfg.lr_final + (1.0 - cfg.lr_final) * 0.5 * (1.0 + math.cos(math.pi * t))


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def resolve_precision(precision: str, device: torch.device) -> str:
    if precision != "auto":
        return precision
    if device.type == "cuda" or (device.type == "cpu" and cpu_has_amx()):
        return "bf16"
    return "fp32"


def autocast(device: torch.device, precision: str):
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if precision == "fp16":
        return torch.autocast(device.type, dtype=torch.float16)
    return nullcontext()


def style_grams(net: LossNetwork, styles: list[str], size: int, device: torch.device,
                layers: tuple[str, ...] | None = None) -> dict[str, torch.Tensor]:
    """Per-layer Gram targets stacked over styles: {layer: [N, C, C]} (fp32), at ``net``'s style layers."""
    layers = layers or net.style_layers
    grams: dict[str, list[torch.Tensor]] = {name: [] for name in layers}
    with torch.no_grad():
        for path in styles:
            x = to_tensor(load_painting(path, size)).unsqueeze(0).to(device)
            mask = painting_mask(path, size)
            feats = net(x)
            for name in layers:
                grams[name].append(gram_matrix(feats[name], None if mask is None else mask.to(device))[0])
    return {k: torch.stack(v) for k, v in grams.items()}


def pixel_mse(y: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of two 0..255 images on the 0..1 scale (the distillation loss)."""
    return ((y.float() - target.float()) / 255.0).pow(2).mean()


class Trainer:
    """Trains one TransformerNet on one style (instance norm) or several (conditional instance norm),
    with perceptual losses, or by distillation from a trained network (``cfg.teacher``)."""

    def __init__(self, cfg: TrainConfig) -> None:
        if cfg.image_size % STRIDE:
            raise ValueError(f"image size must be a multiple of {STRIDE}")
        if cfg.margin < 0 or 2 * cfg.margin % STRIDE:
            raise ValueError(f"margin must be 0 or more with 2 x margin a multiple of {STRIDE}")
        if cfg.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"unknown lr schedule {cfg.lr_schedule!r}: use one of {', '.join(LR_SCHEDULES)}")
        self.cfg = cfg
        self.device = pick_device(cfg.device)
        perceptual = bool(cfg.styles)  # before the teacher fills in its style names
        self.teacher = self._load_teacher(cfg) if cfg.teacher else None
        self.precision = resolve_precision(cfg.precision, self.device)
        log.info("training on %s with %s", self.device, self.precision)
        torch.manual_seed(cfg.seed)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed crop size: pick the fastest conv kernels once
        random.seed(cfg.seed)
        np.random.seed(cfg.seed)
        self.n_styles = len(cfg.styles)
        self.style_names = cfg.names()  # the CIN rows' names, in order
        self.net = TransformerNet(self.n_styles, cfg.width, cfg.residual_blocks, cfg.edge_kernel,
                                  cfg.norm).to(self.device)
        cin = [p for n, p in self.net.named_parameters() if ".cin." in n]
        rest = [p for n, p in self.net.named_parameters() if ".cin." not in n]
        # Group 0: the shared weights; group 1: the CIN tables. set_lr() gives each its rate on every step.
        self.opt = torch.optim.Adam([{"params": rest}] + ([{"params": cin}] if cin else []), lr=cfg.lr)
        self.loss_net = self._loss_network(cfg) if perceptual else None
        self.grams = style_grams(self.loss_net, cfg.styles, cfg.style_size, self.device) if self.loss_net else {}
        unknown = set(cfg.style_layer_weights) - set(self.grams)
        if unknown:
            raise ValueError(f"style layer weights for {sorted(unknown)}: the style layers are {', '.join(self.grams)}")
        self.content_weights = self._content_weights(cfg)
        self.data = ImageFolder(cfg.data, max_side=max(2 * cfg.image_size, 512))
        self.gen = torch.Generator().manual_seed(cfg.seed)  # style choice per sample
        self.data_gen = torch.Generator().manual_seed(cfg.seed + 1)  # crops and flips (prefetch thread)
        self._data_state = self.data_gen.get_state()  # after the last batch consumed
        self.step = 0
        self.history: list[dict] = []
        self.out = Path(cfg.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self._net_fwd = torch.compile(self.net) if cfg.compile else self.net
        self._droplet_maps: list[torch.Tensor] = []
        if cfg.droplet_weight:
            self._watch_droplets()
        self.on_step = None  # on_step(step, losses) -> bool, after each step; False stops fit()
        self._loss_fwd = torch.compile(self.loss_net) if cfg.compile and self.loss_net else self.loss_net

    def _loss_network(self, cfg: TrainConfig) -> torch.nn.Module:
        weights = cfg.vgg_weights if cfg.loss_network.startswith("vgg") else None
        cfg.content_layers = list(cfg.content_layers or [default_layers(cfg.loss_network)[1]])
        layers = tuple(dict.fromkeys((*training_layers(cfg.loss_network), *cfg.content_layers)))
        net = loss_network(cfg.loss_network, layers, weights).to(self.device)
        log.info("perceptual losses in %s (%s weights, %s): style %s, content %s", net.name, net.weights_kind,
                 net.weights_path, ", ".join(net.style_layers), ", ".join(cfg.content_layers))
        return net

    def _content_weights(self, cfg: TrainConfig) -> torch.Tensor | None:
        """Each CIN row's multiplier of the content weight (None: all 1)."""
        unknown = set(cfg.content_weights) - set(self.style_names)
        if unknown:
            raise ValueError(f"content weights for {sorted(unknown)}: the styles are {', '.join(self.style_names)}")
        if not cfg.content_weights:
            return None
        return torch.tensor([cfg.content_weights.get(n, 1.0) for n in self.style_names], device=self.device)

    def _load_teacher(self, cfg: TrainConfig) -> torch.nn.Module:
        """The frozen network to imitate; the student takes its style list, so CIN row i means the same style."""
        teacher, names = load_network(cfg.teacher)
        if cfg.styles and len(cfg.styles) != len(names):
            raise ValueError(f"the teacher holds {len(names)} styles, not {len(cfg.styles)}")
        if cfg.styles and cfg.names() != names:
            raise ValueError(f"the style images must be the teacher's, in its order: {names}, not {cfg.names()}")
        cfg.styles = cfg.styles or names
        cfg.style_names = cfg.style_names or names
        log.info("distilling from %s (%d styles)", cfg.teacher, len(names))
        return teacher.to(self.device).requires_grad_(False)

    # --- checkpoints ---------------------------------------------------------------------------

    def state(self, with_optimizer: bool = True) -> dict:
        s = {
            "model": {k: v.detach().cpu() for k, v in self.net.state_dict().items()},  # portable to CPU hosts
            "step": self.step,
            "config": asdict(self.cfg),
            "style_names": self.style_names,
            "n_styles": self.n_styles,
            "width": self.cfg.width,
            "arch": self.net.arch,
            "loss_network": None if self.loss_net is None else {
                "name": self.loss_net.name, "weights": self.loss_net.weights_kind, "path": self.loss_net.weights_path},
        }
        if with_optimizer:
            s.update(optimizer=self.opt.state_dict(), gen=self.gen.get_state(), data_gen=self._data_state,
                     torch_rng=torch.get_rng_state(), history=self.history)
        return s

    def save(self) -> Path:
        path = self.out / "checkpoint.pt"
        tmp = path.with_suffix(".tmp")
        torch.save(self.state(), tmp)
        tmp.replace(path)
        weights = self.out / "weights.pt"
        torch.save(self.state(with_optimizer=False), weights.with_suffix(".tmp"))
        weights.with_suffix(".tmp").replace(weights)
        (self.out / "losses.json").write_text(json.dumps(self.history))
        return path

    def resume(self, path: str | Path) -> None:
        """Continue exactly from a full checkpoint, or warm-start from a weights-only file."""
        # Loaded onto the CPU: RNG states must stay CPU tensors; weights and Adam moments move on load.
        s = torch.load(path, map_location="cpu", weights_only=False)
        self.net.load_state_dict(s["model"])
        self.step = int(s["step"])
        if "optimizer" in s:
            self.opt.load_state_dict(s["optimizer"])
            self.gen.set_state(s["gen"])
            if "data_gen" in s:
                self.data_gen.set_state(s["data_gen"])
            torch.set_rng_state(s["torch_rng"])
            self.history = list(s.get("history", []))
            log.info("resumed from %s at step %d", path, self.step)
        else:
            self.gen.manual_seed(self.cfg.seed + self.step)
            self.data_gen.manual_seed(self.cfg.seed + self.step + 1)
            log.info("warm start from weights %s at step %d (fresh optimizer)", path, self.step)
        self._data_state = self.data_gen.get_state()

    # --- one step ------------------------------------------------------------------------------

    def draw_styles(self, n: int) -> torch.Tensor:
        """The style of each sample of a batch (row indices of the CIN tables)."""
        return torch.randint(0, self.n_styles, (n,), generator=self.gen)

    def gram_rows(self, idx: torch.Tensor) -> torch.Tensor:
        """The rows of ``self.grams`` that are the targets of styles ``idx``."""
        return idx

    def losses(self, x: torch.Tensor, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        w = one_hot(idx, self.n_styles).to(self.device) if self.n_styles > 1 else None
        if self.loss_net is None:
            return self.distill_losses(x, w)
        self._droplet_maps.clear()
        with autocast(self.device, self.precision):
            y = self.served(self._net_fwd, x, w)
            fy = self._loss_fwd(y)
            fyc, seen = (fy, x) if cfg.content_colour == "rgb" else (self._loss_fwd(luminance(y)), luminance(x))
            with torch.no_grad():
                fx = self._loss_fwd(seen)
                target = None if self.teacher is None else self.served(self.teacher, x, w)
        targets = {k: v[self.gram_rows(idx)] for k, v in self.grams.items()}
        cw = None if self.content_weights is None else self.content_weights[idx.to(self.device)]
        c = sum(content_loss(fyc[n], fx[n], cw) for n in cfg.content_layers) / len(cfg.content_layers)
        s = style_loss(fy, targets, cfg.style_layer_weights or None)
        tv = tv_loss(y)
        total = cfg.content_weight * c + cfg.style_weight * s + cfg.tv_weight * tv
        out = {"content": c, "style": s, "tv": tv}
        if cfg.spot_weight:
            out["spot"] = spot_loss(y, x)
            total = total + cfg.spot_weight * out["spot"]
        if cfg.droplet_weight:
            out["droplet"] = droplet_loss(self._droplet_maps, cfg.margin / (x.shape[-1] + 2 * cfg.margin))
            total = total + cfg.droplet_weight * out["droplet"]
        if target is not None:
            out["distill"] = pixel_mse(y, target)
            total = total + cfg.teacher_weight * out["distill"]
        return {"total": total, **out}

    def _watch_droplets(self) -> None:
        """Keep the inputs of the norms where droplets stand out (``networks.droplet_norms``) for
        ``droplet_loss``."""
        def keep(module: torch.nn.Module, args: tuple) -> None:
            self._droplet_maps.append(args[0])

        for norm in droplet_norms(self.net):
            norm.register_forward_pre_hook(keep)

    def served(self, net, x: torch.Tensor, w: torch.Tensor | None) -> torch.Tensor:
        """``net`` on ``x`` as the server runs it: inside a replicated margin, cropped back."""
        m = self.cfg.margin
        if m == 0:
            return net(x, w)
        return net(F.pad(x, [m, m, m, m], mode="replicate"), w)[:, :, m:-m, m:-m]

    def distill_losses(self, x: torch.Tensor, w: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """Mean squared difference to the teacher's output, on the 0..1 scale."""
        with autocast(self.device, self.precision):
            y = self.served(self._net_fwd, x, w)
            with torch.no_grad():
                target = self.served(self.teacher, x, w)
        d = pixel_mse(y, target)
        return {"total": d, "distill": d}

    def set_lr(self) -> float:
        """Learning rates from the config and step (not from a loaded optimizer: a resumed run may change --lr)."""
        lr = self.cfg.lr * lr_factor(self.cfg, self.step)
        for group, scale in zip(self.opt.param_groups, (1.0, self.cfg.style_lr_scale), strict=False):
            group["lr"] = lr * scale
        return lr

    def train_step(self, x: torch.Tensor) -> dict[str, float]:
        idx = self.draw_styles(x.shape[0])
        lr = self.set_lr()
        self.opt.zero_grad(set_to_none=True)
        loss = self.losses(x.to(self.device), idx.to(self.device))
        loss["total"].backward()
        self.opt.step()
        self.step += 1
        return {**{k: float(v.detach()) for k, v in loss.items()}, "lr": lr}

    def sample(self) -> None:
        """Write a grid: a fixed photo crop stylized in every style."""
        x = resize_square(self.data.images[0], self.cfg.image_size)[None].to(self.device)
        outs = [x]
        with torch.no_grad():
            for i in range(self.n_styles):
                w = one_hot(torch.tensor([i]), self.n_styles).to(self.device) if self.n_styles > 1 else None
                outs.append(self.served(self.net, x, w).clamp(0, 255))
        grid = torch.cat(outs, dim=3)[0].permute(1, 2, 0).byte().cpu().numpy()
        (self.out / "samples").mkdir(exist_ok=True)
        Image.fromarray(grid).save(self.out / "samples" / f"step{self.step:06d}.png")

    def fit(self, steps: int | None = None, progress: bool = True) -> list[dict]:
        from tqdm import tqdm

        cfg = self.cfg
        end = cfg.steps if steps is None else steps
        self.data_gen.set_state(self._data_state)  # rewind past batches a previous fit() drew but never used
        stream = Prefetcher(self.data, cfg.batch_size, cfg.image_size, self.data_gen, self.device)
        self.net.train()
        bar = tqdm(total=end, initial=self.step, disable=not progress, dynamic_ncols=True)
        try:
            self._loop(stream, end, bar)
        finally:
            stream.close()
            bar.close()
        return self.history

    def _loop(self, stream: Prefetcher, end: int, bar) -> None:
        cfg = self.cfg
        start = time.perf_counter()
        t0 = start - (self.history[-1]["time"] if self.history else 0.0)  # logged time adds up over resumes
        running: dict[str, float] = {}
        while self.step < end:
            x, self._data_state = next(stream)
            vals = self.train_step(x)
            if self.on_step is not None and not self.on_step(self.step, vals):
                log.info("stopped by the caller at step %d", self.step)
                break
            running = {k: 0.9 * running.get(k, v) + 0.1 * v for k, v in vals.items()}
            bar.update(1)
            bar.set_postfix({k: f"{v:.3g}" for k, v in running.items()})
            if self.step % cfg.log_every == 0 or self.step == end:
                self.history.append({"step": self.step, "time": time.perf_counter() - t0, **vals})
            if self.step % cfg.checkpoint_every == 0 or self.step == end:
                self.save()
            if cfg.sample_every and self.step % cfg.sample_every == 0:
                self.sample()
            if cfg.time_limit and time.perf_counter() - start > cfg.time_limit:
                log.info("time limit of %.0f s reached at step %d", cfg.time_limit, self.step)
                self.save()
                break

