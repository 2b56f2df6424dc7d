"""Checkpoint I/O shared by training, export, the quality benchmark and the runtimes benchmarks."""

from __future__ import annotations

from pathlib import Path

import torch

from .networks import TransformerNet


def load_network(path: str | Path, map_location: str = "cpu") -> tuple[TransformerNet, list[str]]:
    """Build a TransformerNet from a checkpoint or weights file; returns (net in eval mode, style names)."""
    s = torch.load(path, map_location=map_location, weights_only=False)
    arch = s.get("arch", {})  # files written before the architecture was configurable hold the default one
    net = TransformerNet(int(s["n_styles"]), float(s["width"]), int(arch.get("residual_blocks", 5)),
                         int(arch.get("edge_kernel", 9)), arch.get("norm", "instance"))
    net.load_state_dict(s["model"])
    net.eval()
    return net, list(s["style_names"])
