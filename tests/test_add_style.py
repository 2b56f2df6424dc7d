"""Your own style: a new painting becomes one more style of a trained multi-style network. Only the new rows of
the conditional instance norms train (everything else bit-identical), the loss falls, the next version holds
N+1 styles and passes the export's parity checks, the old styles answer the same pixels; the server job
learn_style is off by default, checks its names, serves the new version without a restart, and a cancelled job
writes nothing. Small crops and few steps; the quality at the default steps is measured in benchmarks."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from PIL import Image

from tests.images import copy_photos

STYLES = Path(__file__).resolve().parent.parent / "styles"
PAINTING = STYLES / "great_wave.jpg"


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    from stylecast.nets.images import bundled_photos

    return copy_photos(bundled_photos()[:6], tmp_path_factory.mktemp("photos"))


@pytest.fixture()
def repo(tmp_path, tiny_style_checkpoint) -> Path:
    from stylecast.export.onnx_export import export_to_repository

    root = tmp_path / "model_repository"
    export_to_repository(tiny_style_checkpoint, "tiny", root)
    return root


def _adder(photos: Path, base: Path, out: Path, steps: int = 12):
    from stylecast.training.add_style import StyleAdder, adder_config

    cfg = adder_config(PAINTING, "wave", base, photos, out, steps=steps, image_size=64, batch_size=2, lr=0.05,
                       style_size=128, checkpoint_every=1000)
    return StyleAdder(cfg, base)


def test_only_the_new_rows_train_and_the_style_loss_falls(photos, tiny_style_checkpoint, tmp_path):
    from stylecast.training.add_style import tables
    from stylecast.training.checkpoint import load_network

    base, _ = load_network(tiny_style_checkpoint)
    adder = _adder(photos, tiny_style_checkpoint, tmp_path / "run")
    from stylecast.training.data import resize_square

    batch = torch.stack([resize_square(im, 64) for im in adder.data.images[:2]])  # a fixed batch
    idx = adder.draw_styles(2)
    with torch.no_grad():
        before = float(adder.losses(batch, idx)["style"])
    adder.fit(progress=False)
    with torch.no_grad():
        after = float(adder.losses(batch, idx)["style"])
    assert after < 0.8 * before, (before, after)
    trained = dict(adder.net.named_parameters())
    for name, p in base.named_parameters():
        new = trained[name].detach().cpu()
        if name.endswith(("cin.gamma", "cin.beta")):
            assert torch.equal(new[:-1], p.detach()), f"{name}: an old style's row changed"
        else:
            assert torch.equal(new, p.detach()), f"{name}: a shared weight changed"
    moved = [float((trained[n].detach()[-1] - trained[n].detach()[:-1].mean(0)).abs().max()) for n, _ in tables(base)]
    assert max(moved) > 1e-3, "the new rows did not train"


def _run(onnx: Path, image: np.ndarray, weights: np.ndarray) -> np.ndarray:
    s = ort.InferenceSession(str(onnx), providers=["CPUExecutionProvider"])
    return s.run(None, {"image": image[None], "style_weights": weights[None].astype(np.float32)})[0][0]


def test_the_next_version_holds_one_more_style_and_the_old_ones_answer_the_same(repo, photos, tmp_path):
    from stylecast.export.styles import add_style, read_config, remove_style, rename_style, styles_of

    change = add_style(PAINTING, "tiny", repo, "wave", steps=4, data=photos, out=tmp_path / "run", progress=False,
                       image_size=64, batch_size=2, style_size=128)
    assert change.version == 2 and change.styles == ["red", "green", "blue", "wave"]
    assert all(r.max_abs <= 2 for r in change.parity)  # the export's ORT against PyTorch parity
    cfg = read_config(repo / "tiny")
    assert styles_of(cfg) == change.styles and list(cfg.input[1].dims) == [4]
    assert (repo / "tiny" / "2" / "weights.pt").is_file() and not list((repo / "tiny").glob(".staging-*"))
    photo = np.asarray(Image.open(next(photos.iterdir())).convert("RGB").resize((96, 80)))
    for i in range(3):
        old = _run(repo / "tiny" / "1" / "model.onnx", photo, np.eye(3)[i])
        new = _run(repo / "tiny" / "2" / "model.onnx", photo, np.eye(4)[i])
        assert np.abs(old.astype(int) - new).max() <= 1, f"style {i} changed"
    wave = _run(repo / "tiny" / "2" / "model.onnx", photo, np.eye(4)[3])
    assert np.abs(wave.astype(int) - new).mean() > 1  # the new style is a style of its own

    renamed = rename_style("tiny", "wave", "hokusai", repo)
    assert renamed[-1] == "hokusai" and styles_of(read_config(repo / "tiny"))[-1] == "hokusai"
    smaller = remove_style("tiny", "green", repo, out=tmp_path / "rm")
    assert smaller.version == 3 and smaller.styles == ["red", "blue", "hokusai"]
    for old_i, new_i in ((0, 0), (2, 1)):
        a = _run(repo / "tiny" / "1" / "model.onnx", photo, np.eye(3)[old_i])
        b = _run(repo / "tiny" / "3" / "model.onnx", photo, np.eye(3)[new_i])
        assert np.abs(a.astype(int) - b).max() <= 1
    with pytest.raises(ValueError, match="no style"):
        remove_style("tiny", "nope", repo)
    with pytest.raises(ValueError, match="invalid style name"):
        add_style(PAINTING, "tiny", repo, "../evil", steps=1, data=photos)


def test_a_stopped_job_writes_nothing(repo, photos, tmp_path):
    from stylecast.export.styles import Stopped, add_style

    before = sorted(p.name for p in (repo / "tiny").iterdir())
    config = (repo / "tiny" / "config.pbtxt").read_text()
    with pytest.raises(Stopped):
        add_style(PAINTING, "tiny", repo, "wave", steps=50, data=photos, out=tmp_path / "run", progress=False,
                  image_size=64, batch_size=1, style_size=128, on_step=lambda step, losses, preview: step < 2)
    assert sorted(p.name for p in (repo / "tiny").iterdir()) == before
    assert (repo / "tiny" / "config.pbtxt").read_text() == config


# --- the server job ----------------------------------------------------------------------------------


def test_learn_style_is_not_served_by_default(sidecar_url):
    from stylecast.client import Client, StylecastError

    with Client(sidecar_url) as c, pytest.raises(StylecastError) as e:
        c.learn_style(np.zeros((32, 32, 3), np.uint8), model="starter8", name="x", steps=1)
    assert "unknown model: 'learn_style'" in str(e.value)  # streams carry Triton's error text, not a code


@pytest.fixture(scope="module")
def learning_server(tmp_path_factory, tiny_style_checkpoint):
    from stylecast.export.onnx_export import export_to_repository
    from stylecast.server.app import Server, ServerOptions
    from stylecast.server.repository import ControlMode

    root = tmp_path_factory.mktemp("learn") / "model_repository"
    export_to_repository(tiny_style_checkpoint, "tiny", root)
    srv = Server(ServerOptions(model_repository=root, port=0, metrics_port=None, sidecar=True, allow_learning=True,
                               model_control_mode=ControlMode.EXPLICIT, load_models=["tiny"], max_message_mb=64))
    srv.start()
    yield srv, root
    srv.stop()
    shutil.rmtree(root, ignore_errors=True)


def test_learn_style_serves_the_new_style_without_a_restart(learning_server):
    from stylecast.client import Client, StylecastError

    srv, root = learning_server
    painting = np.asarray(Image.open(PAINTING).convert("RGB").resize((96, 64)))
    steps_seen: list[int] = []
    with Client(f"127.0.0.1:{srv.port}") as c:
        for bad, text in (({"name": "../x"}, "invalid style name"), ({"model": "nosuch"}, "unknown model"),
                          ({"name": "red"}, "already has a style"), ({"model": "../tiny"}, "invalid model name")):
            with pytest.raises(StylecastError) as e:
                c.learn_style(painting, **{"model": "tiny", "name": "wave", "steps": 1, **bad})
            assert text in str(e.value), (bad, e.value)
        # a cancelled job leaves the repository as it was
        with pytest.raises(StylecastError) as e:
            c.learn_style(painting, model="tiny", name="wave", steps=200, image_size=64, batch_size=1,
                          progress=lambda step, loss, preview: step < 2)
        assert e.value.status.name == "CANCELLED"
        assert sorted(p.name for p in root.glob("tiny/*") if p.is_dir()) == ["1"]
        learned = c.learn_style(painting, model="tiny", name="wave", steps=3, image_size=64, batch_size=1,
                                preview_every=1, progress=lambda step, loss, preview: steps_seen.append(step))
        assert learned.version == 2 and learned.styles == ["red", "green", "blue", "wave"]
        assert steps_seen == [1, 2, 3] and learned.preview.ndim == 3 and len(learned.losses) == 3
        assert c.styles("tiny") == ["red", "green", "blue", "wave"]  # served at once, no restart
        photo = np.asarray(Image.open(PAINTING).convert("RGB").resize((64, 48)))
        out = np.asarray(c.stylize(photo, "wave", model="tiny"))
        assert out.shape == photo.shape


def test_relearning_a_style_trains_its_rows_alone(photos, tiny_style_checkpoint, tmp_path):
    """--relearn: one existing style's rows train from their current values; every other row and weight stays."""
    from stylecast.training.add_style import StyleAdder, adder_config
    from stylecast.training.checkpoint import load_network

    base, names = load_network(tiny_style_checkpoint)
    cfg = adder_config(PAINTING, names[0], tiny_style_checkpoint, photos, tmp_path / "run", steps=8, image_size=64,
                       batch_size=2, lr=0.05, style_size=128, checkpoint_every=1000)
    adder = StyleAdder(cfg, tiny_style_checkpoint, relearn=True)
    assert adder.n_styles == base.n_styles and adder.new == 0
    adder.fit(progress=False)
    trained = dict(adder.net.named_parameters())
    moved = 0.0
    for name, p in base.named_parameters():
        new = trained[name].detach().cpu()
        if name.endswith(("cin.gamma", "cin.beta")):
            assert torch.equal(new[1:], p.detach()[1:]), f"{name}: another style's row changed"
            moved = max(moved, float((new[0] - p.detach()[0]).abs().max()))
        else:
            assert torch.equal(new, p.detach()), f"{name}: a shared weight changed"
    assert moved > 1e-3, "the relearned rows did not train"
    # take_rows puts that row into the base's file; a file that differs elsewhere is refused
    from stylecast.training.add_style import take_rows

    merged, _ = load_network(take_rows(tiny_style_checkpoint, {names[0]: tmp_path / "run" / "weights.pt"},
                                       tmp_path / "merged.pt"))
    assert all(torch.equal(p, trained[n].detach()) for n, p in merged.named_parameters())
    other = torch.load(tmp_path / "run" / "weights.pt", weights_only=False)
    key = next(k for k in other["model"] if not k.endswith(("cin.gamma", "cin.beta")))
    other["model"][key] = other["model"][key] + 1
    torch.save(other, tmp_path / "tampered.pt")
    with pytest.raises(ValueError, match="outside the style rows"):
        take_rows(tiny_style_checkpoint, {names[0]: tmp_path / "tampered.pt"}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="no style named"):
        StyleAdder(adder_config(PAINTING, "nope", tiny_style_checkpoint, photos, tmp_path / "r2"),
                   tiny_style_checkpoint, relearn=True)
    # --content-weight-of reaches the relearned row by its place in the whole network (here the last)
    cfg = adder_config(PAINTING, names[-1], tiny_style_checkpoint, photos, tmp_path / "r3", image_size=64,
                       content_weights={names[-1]: 2.0})
    last = StyleAdder(cfg, tiny_style_checkpoint, relearn=True)
    assert last.new == len(names) - 1 and last.content_weights.tolist() == [1.0] * (len(names) - 1) + [2.0]
    x = torch.rand(2, 3, 64, 64) * 255
    assert torch.isfinite(last.losses(x, last.draw_styles(2))["total"])
