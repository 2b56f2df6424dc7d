"""Shared output of the benchmark scripts: a printed table and a JSON file with the machine."""

from __future__ import annotations

import json
from pathlib import Path


def latest_onnx(model_dir: Path) -> Path:
    """``<model_dir>/<highest version>/model.onnx`` of a model in a Triton repository."""
    version = max(int(p.name) for p in model_dir.iterdir() if p.name.isdigit())
    return model_dir / str(version) / "model.onnx"


def print_table(rows: list[dict], columns: list[tuple[str, str, str]]) -> None:
    """``columns``: (key, header, format spec) per column; each column as wide as its widest cell."""
    cells = [[("-" if r.get(key) is None else format(r[key], fmt)).strip() for key, _, fmt in columns]
             for r in rows]
    widths = [max([len(h), 8] + [len(c[i]) for c in cells]) for i, (_, h, _) in enumerate(columns)]
    print(" | ".join(f"{h:>{w}}" for (_, h, _), w in zip(columns, widths, strict=True)))
    for row in cells:
        print(" | ".join(f"{c:>{w}}" for c, w in zip(row, widths, strict=True)))


def synchronizer(device: str):
    """A function that waits for the device's queued work (CUDA runs asynchronously), so timers are honest."""
    import torch

    def sync() -> None:
        if str(device).startswith("cuda"):
            torch.cuda.synchronize()
    return sync


def save(out: str | Path, payload: dict) -> None:
    from stylecast.sysinfo import machine

    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"machine": machine(), **payload}, indent=2))
    print(f"wrote {path}")
