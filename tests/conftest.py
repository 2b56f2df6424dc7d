from __future__ import annotations

import logging
from pathlib import Path

import pytest
import tritonclient.grpc as grpcclient
from stylecast.server.app import Server, ServerOptions
from stylecast.server.repository import ControlMode

from tests.images import copy_photos
from tests.models import SIDECAR_MESSAGE_MB, build_repository


def running(**options):
    """A started embedded server, stopped when the fixture that yields from it ends."""
    srv = Server(ServerOptions(**{"port": 0, "metrics_port": None, **options}))
    srv.start()
    yield srv
    srv.stop()

logging.getLogger("stylecast").setLevel(logging.INFO)


@pytest.fixture(scope="session")
def repo_dir(tmp_path_factory) -> Path:
    return build_repository(tmp_path_factory.mktemp("repo"))


@pytest.fixture(scope="session")
def tiny_style_checkpoint(tmp_path_factory) -> Path:
    """A random 3-style network at width 0.25: the real graph and contract, instant to build."""
    import torch
    from stylecast.training.networks import TransformerNet

    torch.manual_seed(0)
    net = TransformerNet(n_styles=3, width=0.25)
    with torch.no_grad():  # distinct per-style tables, as training would make them
        for name, p in net.named_parameters():
            if name.endswith("cin.gamma"):
                p.normal_(1.0, 0.5)
            elif name.endswith("cin.beta"):
                p.normal_(0.0, 0.5)
    path = tmp_path_factory.mktemp("ckpt") / "weights.pt"
    torch.save({"model": net.state_dict(), "step": 0, "n_styles": 3, "width": 0.25,
                "style_names": ["red", "green", "blue"]}, path)
    return path


@pytest.fixture(scope="session")
def server(repo_dir, tiny_style_checkpoint):
    from stylecast.export.onnx_export import export_to_repository

    export_to_repository(tiny_style_checkpoint, "tiny_style", repo_dir)
    yield from running(model_repository=repo_dir, metrics_port=0, http_port=0, max_message_mb=8)


@pytest.fixture(scope="session")
def url(server) -> str:
    return f"127.0.0.1:{server.port}"


@pytest.fixture(scope="session")
def http_url(server) -> str:
    return f"127.0.0.1:{server.http.port}"


@pytest.fixture()
def triton(url):
    with grpcclient.InferenceServerClient(url) as c:
        yield c


@pytest.fixture(scope="session")
def cat_on_grey():
    from tests.images import cat_on_grey

    return cat_on_grey()


@pytest.fixture(scope="session")
def sidecar_server(tmp_path_factory):
    """The PyTorch sidecar on the real classifier, a gallery of bundled photos and a private cache."""
    from stylecast.nets.images import bundled_photos

    gallery = copy_photos(bundled_photos()[:8], tmp_path_factory.mktemp("gallery"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("STYLECAST_GALLERY", str(gallery))
        mp.setenv("STYLECAST_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield from running(model_repository=None, sidecar=True, http_port=0, max_message_mb=SIDECAR_MESSAGE_MB)


@pytest.fixture(scope="session")
def sidecar_url(sidecar_server) -> str:
    return f"127.0.0.1:{sidecar_server.port}"


@pytest.fixture()
def explicit_server(repo_dir):
    yield from running(model_repository=repo_dir, model_control_mode=ControlMode.EXPLICIT, load_models=["add_sub"])
