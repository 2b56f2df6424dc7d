"""--upstream: a server forwards the models of an upstream KServe v2 server (an embedded server standing in
for Triton, with the shipped starter8): the index lists them with the upstream's config, answers are the
upstream's pixels, the upstream's errors keep their status, and an upstream that starts later is found."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import numpy as np
import pytest
from stylecast.client import Client, StylecastError
from stylecast.server.app import Server, ServerOptions

ROOT = Path(__file__).resolve().parent.parent


def _ready(c: Client) -> set[str]:
    return {m.name for m in c.models() if m.state == "READY"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def triton_like():
    srv = Server(ServerOptions(model_repository=ROOT / "model_repository", port=0, metrics_port=None))
    srv.start()
    yield srv
    srv.stop(0)


@pytest.fixture(scope="module")
def forwarder(triton_like):
    srv = Server(ServerOptions(model_repository=None, port=0, metrics_port=None, http_port=0,
                               upstream=f"127.0.0.1:{triton_like.port}"))
    srv.start()
    yield srv
    srv.stop(0)


def test_the_upstream_models_are_listed_with_their_config_and_answer_its_pixels(triton_like, forwarder):
    photo = np.random.default_rng(0).integers(0, 256, (120, 160, 3), np.uint8)
    with Client(f"127.0.0.1:{triton_like.port}") as up, Client(f"127.0.0.1:{forwarder.port}") as here:
        assert {"starter8", "starter8_fast"} <= _ready(here)
        assert here.config("starter8") == up.config("starter8")
        assert here.styles("starter8") == up.styles("starter8")
        assert np.array_equal(here.stylize(photo, "great_wave", model="starter8"),
                              up.stylize(photo, "great_wave", model="starter8"))


def test_the_upstream_errors_keep_their_status(triton_like, forwarder):
    with Client(f"127.0.0.1:{forwarder.port}", retries=0) as here:
        photo = np.zeros((64, 64, 3), np.uint8)
        with pytest.raises(StylecastError) as e:
            here.infer("starter8", {"image": photo[None], "style_weights": np.full((1, 8), -1.0, np.float32)},
                       ["stylized"])
        assert e.value.status.name == "INVALID_ARGUMENT" and "upstream" in e.value.message, e.value


def test_an_upstream_that_starts_later_is_found():
    port = _free_port()
    here = Server(ServerOptions(model_repository=None, port=0, metrics_port=None, upstream=f"127.0.0.1:{port}"))
    here.start()
    up = None
    try:
        with Client(f"127.0.0.1:{here.port}") as c:
            assert "starter8_fast" not in _ready(c)
            up = Server(ServerOptions(model_repository=ROOT / "model_repository", port=port, metrics_port=None,
                                      load_models=[]))
            up.start()
            deadline = time.monotonic() + 30
            while "starter8_fast" not in _ready(c) and time.monotonic() < deadline:
                time.sleep(0.5)
            assert "starter8_fast" in _ready(c)
            out = c.stylize(np.full((32, 48, 3), 128, np.uint8), "starry_night", model="starter8_fast")
            assert out.shape == (32, 48, 3) and out.std() > 1
    finally:
        here.stop(0)
        if up is not None:
            up.stop(0)
