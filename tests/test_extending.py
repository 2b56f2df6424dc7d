"""docs/extending.md, done once each: a model kind is one backend class and one registry call, a technique is
one Spec in its family's list, an error kind is one row of the error table that every transport reads, and a
transport is a codec to the data plane's own request and response."""

from __future__ import annotations

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

INVERT_CONFIG = """
name: "negative"
backend: "example_negative"
max_batch_size: 0
input [ { name: "image" data_type: TYPE_UINT8 dims: [ -1, -1, 3 ] } ]
output [ { name: "negative" data_type: TYPE_UINT8 dims: [ -1, -1, 3 ] } ]
"""


def test_a_new_model_kind_is_a_backend_and_one_registry_call(tmp_path):
    """A folder model whose config names backend "example_negative" is served once a factory is registered
    under that name: the generic checks (names, datatypes, shapes) come from its config, the answer from it."""
    from stylecast.server import registry
    from stylecast.server.app import Server, ServerOptions
    from stylecast.server.backend import Backend

    class Negative(Backend):
        platform = "example_negative"

        def load(self) -> None:
            pass

        def infer(self, inputs, outputs, parameters, emit=None):
            return {"negative": 255 - inputs["image"]}

    (tmp_path / "negative" / "1").mkdir(parents=True)
    (tmp_path / "negative" / "config.pbtxt").write_text(INVERT_CONFIG)
    registry.register_backend("example_negative", Negative)
    srv = Server(ServerOptions(model_repository=tmp_path, port=0, metrics_port=None, sidecar=False))
    try:
        with grpcclient.InferenceServerClient(f"127.0.0.1:{srv.start()}") as c:
            x = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
            inp = grpcclient.InferInput("image", list(x.shape), "UINT8")
            inp.set_data_from_numpy(x)
            out = c.infer("negative", [inp]).as_numpy("negative")
            assert np.array_equal(out, 255 - x)
            wrong = grpcclient.InferInput("image", [2, 3, 3], "FP32")
            wrong.set_data_from_numpy(x.astype(np.float32))
            with pytest.raises(Exception, match="FP32"):
                c.infer("negative", [wrong])
    finally:
        srv.stop(0)
        registry._BACKENDS.pop("example_negative")


def _repository_with_negative_in_code(versions: tuple[int, ...] = (1,)):
    """A repository with no folder, serving one model declared in code for a backend of its own."""
    from stylecast.server.backend import Backend
    from stylecast.server.repository import ModelRepository
    from tritonclient.grpc import model_config_pb2 as mc

    class Negative(Backend):
        def load(self) -> None:
            self.loaded_from = self.version_dir

        def infer(self, inputs, outputs, parameters, emit=None):
            return {"negative": 255 - inputs["image"]}

    repository = ModelRepository(None)
    repository.add_backend("example_in_code", Negative)
    cfg = mc.ModelConfig(name="negative", backend="example_in_code", max_batch_size=0)
    cfg.input.add(name="image", data_type=mc.TYPE_UINT8, dims=[-1, -1, 3])
    cfg.output.add(name="negative", data_type=mc.TYPE_UINT8, dims=[-1, -1, 3])
    repository.declare(cfg, versions=versions)
    return repository


def test_a_model_declared_in_code_goes_through_the_same_backend_table():
    """No folder: ``declare`` holds the config, and the backend it names (here one of this repository alone,
    ``add_backend``) builds the version; a config naming a backend nobody serves is refused with the names."""
    from stylecast.server.app import Server, ServerOptions
    from tritonclient.grpc import model_config_pb2 as mc

    repository = _repository_with_negative_in_code(versions=(1, 3))
    lost = mc.ModelConfig(name="lost", backend="nobody_serves_this", max_batch_size=0)
    repository.declare(lost)
    srv = Server(ServerOptions(model_repository=None, port=0, metrics_port=None), repository)
    try:
        with grpcclient.InferenceServerClient(f"127.0.0.1:{srv.start()}") as c:
            x = np.full((2, 2, 3), 5, np.uint8)
            inp = grpcclient.InferInput("image", list(x.shape), "UINT8")
            inp.set_data_from_numpy(x)
            assert int(c.infer("negative", [inp], model_version="1").as_numpy("negative")[0, 0, 0]) == 250
            assert repository.get("negative", "3").backend.loaded_from.name == "3"
            index = {m.name: m for m in c.get_model_repository_index(as_json=False).models}
            assert index["lost"].state == "UNAVAILABLE"
            assert "nobody_serves_this" in index["lost"].reason and "example_in_code" in index["lost"].reason
    finally:
        srv.stop(0)


def test_a_transport_is_a_codec_to_the_data_planes_types():
    """The data plane takes and gives its own Request / Response: a transport that is a plain function call
    needs no protobuf and no JSON, and a mistake comes back through the one error table."""
    from stylecast.server.dataplane import DataPlane
    from stylecast.server.errors import describe
    from stylecast.server.inference import Request, Tensor

    repository = _repository_with_negative_in_code()
    repository.start()
    plane = DataPlane(repository)
    try:
        x = np.arange(12, dtype=np.uint8).reshape(2, 2, 3)
        answer = plane.infer(Request("negative", inputs=[Tensor("image", "UINT8", [2, 2, 3], x)]), timeout=5)
        (out,) = answer.outputs
        assert (out.name, out.datatype, out.shape) == ("negative", "UINT8", [2, 2, 3])
        assert np.array_equal(out.data, 255 - x)
        raw = plane.infer(Request("negative", inputs=[Tensor("image", "UINT8", [2, 2, 3], x.tobytes())]))
        assert np.array_equal(raw.outputs[0].data, 255 - x)
        with pytest.raises(Exception) as e:
            plane.infer(Request("negative", inputs=[Tensor("image", "UINT8", [2, 2, 3], b"short")]))
        assert describe(e.value)[0].value.grpc.name == "INVALID_ARGUMENT" and "byte size" in describe(e.value)[1]
    finally:
        plane.close()


def test_a_new_technique_is_one_spec(monkeypatch):
    """One Spec added to a family's SPECS: served with its config, parameter checks and answer, no other code."""
    from stylecast.client import Client, StylecastError
    from stylecast.server.app import Server, ServerOptions
    from stylecast.server.sidecar import attribution
    from stylecast.server.sidecar.spec import Param, Spec, image

    def brighten(inputs: dict, p: dict, progress=None) -> dict:
        return {"image": np.clip(inputs["image"].astype(np.int32) + p["levels"], 0, 255).astype(np.uint8)}

    spec = Spec("brighten", "adds grey levels to every pixel", (image(),), (image(),),
                (Param("levels", int, 10, 0, 100, "levels to add"),), brighten, family="attribution")
    monkeypatch.setattr(attribution, "SPECS", (*attribution.SPECS, spec))
    srv = Server(ServerOptions(model_repository=None, port=0, metrics_port=None, sidecar=True))
    try:
        with Client(f"127.0.0.1:{srv.start()}") as c:
            cfg = c.config("brighten")
            assert cfg.parameters["param.levels"].string_value.startswith("int,default=10,min=0,max=100")
            x = np.full((4, 5, 3), 100, np.uint8)
            assert int(c.infer("brighten", {"image": x}, None, {"levels": 7})["image"][0, 0, 0]) == 107
            with pytest.raises(StylecastError) as e:
                c.infer("brighten", {"image": x}, None, {"levels": 1000})
            assert e.value.status.name == "INVALID_ARGUMENT" and "levels" in e.value.message
    finally:
        srv.stop(0)


def test_every_error_kind_is_one_row_every_transport_reads():
    """Each row of the error table gives the gRPC status, the HTTP status and the Triton python-backend code of
    its exceptions, through the one function (describe) that the gRPC, HTTP and python-backend paths call. (The
    python backend's pb_utils exists only inside Triton: here a class with its TritonError's shape stands in;
    the conformance suite runs the real one.)"""
    from types import SimpleNamespace

    from stylecast.server import errors
    from stylecast.server.sidecar.triton_python import _triton_error

    class TritonError:
        def __init__(self, message: str, code: str | None = None) -> None:
            self.message, self.code = message, code

    for name in {s.value.triton for s in errors.Status} - {None}:
        setattr(TritonError, name, name)
    pb_utils = SimpleNamespace(TritonError=TritonError)
    for status in errors.Status:
        err = errors.ServerError(f"a {status.name} error", status)
        assert errors.to_grpc(err) == (status.value.grpc, f"a {status.name} error")
        assert errors.to_http(err) == (status.value.http, f"a {status.name} error")
        answer = _triton_error(pb_utils, err)
        assert (answer.code, answer.message) == (status.value.triton, f"a {status.name} error")
    assert errors.to_http(RuntimeError("boom"))[0] == 500  # an unexpected error is INTERNAL (and logged)
