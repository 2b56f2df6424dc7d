"""The command line as a newcomer meets it: one-line errors that say what to do, and stylize without a server."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent


def _cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "stylecast.cli", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=300)


def test_a_closed_port_and_a_missing_file_are_one_line_errors(tmp_path):
    r = _cli("stylize", str(ROOT / "styles" / "great_wave.jpg"), "-o", str(tmp_path / "o.png"),
             "--style", "great_wave", "--url", "127.0.0.1:1")
    assert r.returncode != 0 and "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) <= 3 and "127.0.0.1:1" in lines[0] and "stylecast serve" in r.stderr, r.stderr
    r = _cli("stylize", str(tmp_path / "missing.jpg"), "-o", str(tmp_path / "o.png"), "--local")
    assert r.returncode != 0 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) <= 3
    assert "missing.jpg" in r.stderr
    r = _cli("models", "--url", "127.0.0.1:1")
    assert r.returncode != 0 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) <= 3


def test_stylize_local_gives_the_served_pixels(tmp_path):
    from stylecast.client import Client
    from stylecast.server.app import Server, ServerOptions

    photo = ROOT / "styles" / "cafe_terrace.jpg"
    r = _cli("stylize", str(photo), "-o", str(tmp_path / "local.png"), "--style", "great_wave", "--local")
    assert r.returncode == 0, r.stderr
    local = np.asarray(Image.open(tmp_path / "local.png"))
    srv = Server(ServerOptions(model_repository=ROOT / "model_repository", port=0, metrics_port=None))
    try:
        with Client(f"127.0.0.1:{srv.start()}") as c:
            served = np.asarray(c.stylize(Image.open(photo).convert("RGB"), "great_wave"))
    finally:
        srv.stop()
    assert local.shape == served.shape
    assert np.abs(local.astype(int) - served).max() <= 1
    assert np.abs(local.astype(int) - np.asarray(Image.open(photo).convert("RGB"))).mean() > 10  # it is stylized
    r = _cli("stylize", str(photo), "-o", str(tmp_path / "x.png"), "--local")
    assert r.returncode != 0 and "great_wave" in r.stderr  # no --style: say which styles there are
