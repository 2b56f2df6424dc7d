"""The quality measure: the shipped network against per-image Gatys optimization with the same losses."""

from __future__ import annotations

from pathlib import Path

import pytest
from stylecast.training.data import heldout_photos
from stylecast.training.quality import layer_ratios, measure, summarize

ROOT = Path(__file__).resolve().parent.parent
CHECKPOINT = ROOT / "checkpoints" / "starter8.pt"


@pytest.fixture(scope="module")
def rows(tmp_path_factory):
    import torch

    d = tmp_path_factory.mktemp("heldout")
    name, path = heldout_photos()[0]
    (d / f"{name}{path.suffix}").write_bytes(path.read_bytes())
    names = torch.load(CHECKPOINT, map_location="cpu", weights_only=False)["style_names"]
    return measure(CHECKPOINT, [ROOT / "styles" / f"{n}.jpg" for n in names], d, size=96, gatys_steps=15,
                   max_photos=1)


def test_network_and_optimization_both_move_the_photo_toward_every_style(rows):
    assert len(rows) == 8
    for r in rows:
        assert r.style_feedforward < 0.5 * r.style_photo, r
        assert r.style_gatys < r.style_photo, r


def test_layers_add_up_to_the_style_loss_and_summaries_agree(rows):
    for r in rows:
        assert sum(r.layers_feedforward.values()) == pytest.approx(r.style_feedforward, rel=1e-4)
        assert sum(r.layers_gatys.values()) == pytest.approx(r.style_gatys, rel=1e-4)
    table = {t["style"]: t for t in summarize(rows)}
    assert table[rows[0].style]["ratio"] == pytest.approx(rows[0].ratio)
    layers = layer_ratios(rows)
    assert set(layers) == {"relu1_2", "relu2_2", "relu3_3", "relu4_3"}
    assert all(v["ratio"] > 0 for v in layers.values())


def test_fidelity_of_a_network_to_itself_is_exact_and_to_a_perturbed_copy_is_not(tmp_path):
    import torch
    from stylecast.training.quality import fidelity

    d = tmp_path / "photo"
    d.mkdir()
    name, path = heldout_photos()[0]
    (d / f"{name}{path.suffix}").write_bytes(path.read_bytes())
    same = fidelity(CHECKPOINT, CHECKPOINT, d, size=64, max_photos=1)
    assert all(r["mean_abs_levels"] == 0 and r["psnr_db"] > 100 for r in same)
    state = torch.load(CHECKPOINT, map_location="cpu", weights_only=False)
    state["model"] = {k: v + 0.05 * torch.randn_like(v) if v.is_floating_point() else v
                      for k, v in state["model"].items()}
    torch.save(state, tmp_path / "noisy.pt")
    noisy = fidelity(tmp_path / "noisy.pt", CHECKPOINT, d, size=64, max_photos=1)
    assert all(r["mean_abs_levels"] > 0.5 and r["psnr_db"] < 60 for r in noisy)
