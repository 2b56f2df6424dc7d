"""Every RPC of the protocol, driven by unmodified tritonclient.grpc against the embedded server."""

from __future__ import annotations

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from tests.models import add_sub_inputs


def test_health_and_metadata(triton):
    assert triton.is_server_live()
    # 'broken' cannot load, so the server as a whole is not ready, as with Triton.
    assert not triton.is_server_ready()
    assert triton.is_model_ready("add_sub")
    assert not triton.is_model_ready("broken")
    meta = triton.get_server_metadata(as_json=True)
    assert meta["name"] == "stylecast" and "system_shared_memory" in meta["extensions"]
    mm = triton.get_model_metadata("add_sub", as_json=True)
    assert mm["platform"] == "onnxruntime_onnx"
    assert [(i["name"], i["datatype"], i["shape"]) for i in mm["inputs"]] == [
        ("INPUT0", "FP32", ["-1", "16"]), ("INPUT1", "FP32", ["-1", "16"])]


def test_model_config_and_autocomplete(triton):
    cfg = triton.get_model_config("identity").config
    # identity has no config.pbtxt: inputs, outputs and batching come from the graph.
    assert cfg.max_batch_size == 4 and cfg.HasField("dynamic_batching")
    assert [(i.name, list(i.dims)) for i in cfg.input] == [("image", [-1, -1, 3])]
    assert [o.name for o in cfg.output] == ["stylized"]
    style = triton.get_model_config("tiny_style").config
    assert style.parameters["styles"].string_value == "red,green,blue"


def test_infer_add_sub(triton):
    a = np.arange(32, dtype=np.float32).reshape(2, 16)
    b = np.ones((2, 16), np.float32)
    r = triton.infer("add_sub", add_sub_inputs(a, b))
    np.testing.assert_array_equal(r.as_numpy("OUTPUT0"), a + b)
    np.testing.assert_array_equal(r.as_numpy("OUTPUT1"), a - b)
    only = triton.infer("add_sub", add_sub_inputs(a, b), outputs=[grpcclient.InferRequestedOutput("OUTPUT1")])
    assert [o.name for o in only.get_response().outputs] == ["OUTPUT1"]


def test_versions(triton):
    index = triton.get_model_repository_index(as_json=True)["models"]
    versions = sorted(m["version"] for m in index if m["name"] == "versioned")
    assert versions == ["1", "2"]
    img = np.random.default_rng(0).integers(0, 256, (1, 5, 7, 3), dtype=np.uint8)
    for v in ("1", "2", ""):
        i = grpcclient.InferInput("image", list(img.shape), "UINT8")
        i.set_data_from_numpy(img)
        assert triton.infer("versioned", [i], model_version=v).as_numpy("stylized").tobytes() == img.tobytes()
    assert triton.is_model_ready("versioned", "2")
    assert not triton.is_model_ready("versioned", "3")


def test_repository_index_reports_failure_reason(triton):
    index = {m["name"]: m for m in triton.get_model_repository_index(as_json=True)["models"]}
    assert index["broken"]["state"] == "UNAVAILABLE"
    assert "model.onnx" in index["broken"]["reason"] or "load" in index["broken"]["reason"]
    with pytest.raises(InferenceServerException) as e:
        triton.infer("broken", [grpcclient.InferInput("x", [1], "FP32")])
    assert e.value.status() == "StatusCode.NOT_FOUND"
    assert index["add_sub"]["state"] == "READY"


def test_statistics(triton):
    a = np.zeros((1, 16), np.float32)
    before = triton.get_inference_statistics("add_sub", as_json=True)["model_stats"][0]
    triton.infer("add_sub", add_sub_inputs(a, a))
    after = triton.get_inference_statistics("add_sub", as_json=True)["model_stats"][0]
    assert int(after["inference_stats"]["success"]["count"]) == int(
        before.get("inference_stats", {}).get("success", {}).get("count", 0)) + 1
    assert int(after["execution_count"]) >= 1 and int(after["last_inference"]) > 0


def test_streaming_in_order(triton):
    import queue

    results: queue.Queue = queue.Queue()
    triton.start_stream(callback=lambda result, error: results.put((result, error)))
    try:
        for k in range(5):
            a = np.full((1, 16), k, np.float32)
            triton.async_stream_infer("add_sub", add_sub_inputs(a, a), request_id=str(k))
        bad = grpcclient.InferInput("INPUT0", [1, 16], "INT32")
        bad.set_data_from_numpy(np.zeros((1, 16), np.int32))
        triton.async_stream_infer("add_sub", [bad], request_id="bad")
        got = [results.get(timeout=30) for _ in range(6)]
    finally:
        triton.stop_stream()
    for k, (result, error) in enumerate(got[:5]):
        assert error is None
        assert result.get_response().id == str(k)
        np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), np.full((1, 16), 2 * k, np.float32))
    assert got[5][0] is None and "missing required input" in got[5][1].message()


def test_system_shared_memory_round_trip(triton):
    import tritonclient.utils.shared_memory as shm

    a = np.arange(16, dtype=np.float32).reshape(1, 16)
    b = np.full((1, 16), 3, np.float32)
    nbytes = a.nbytes
    ih = shm.create_shared_memory_region("in", "/stylecast_test_in", 2 * nbytes)
    oh = shm.create_shared_memory_region("out", "/stylecast_test_out", 2 * nbytes)
    try:
        shm.set_shared_memory_region(ih, [a])
        shm.set_shared_memory_region(ih, [b], offset=nbytes)
        triton.register_system_shared_memory("in", "/stylecast_test_in", 2 * nbytes)
        triton.register_system_shared_memory("out", "/stylecast_test_out", 2 * nbytes)
        status = triton.get_system_shared_memory_status(as_json=True)
        assert set(status["regions"]) == {"in", "out"}
        ins = [grpcclient.InferInput("INPUT0", [1, 16], "FP32"), grpcclient.InferInput("INPUT1", [1, 16], "FP32")]
        ins[0].set_shared_memory("in", nbytes)
        ins[1].set_shared_memory("in", nbytes, offset=nbytes)
        outs = [grpcclient.InferRequestedOutput("OUTPUT0"), grpcclient.InferRequestedOutput("OUTPUT1")]
        outs[0].set_shared_memory("out", nbytes)
        outs[1].set_shared_memory("out", nbytes, offset=nbytes)
        r = triton.infer("add_sub", ins, outputs=outs)
        o0 = r.get_output("OUTPUT0")
        assert o0.parameters["shared_memory_region"].string_param == "out"
        s = shm.get_contents_as_numpy(oh, np.float32, [1, 16])
        d = shm.get_contents_as_numpy(oh, np.float32, [1, 16], offset=nbytes)
        np.testing.assert_array_equal(s, a + b)
        np.testing.assert_array_equal(d, a - b)
        with pytest.raises(InferenceServerException, match="already in manager"):
            triton.register_system_shared_memory("in", "/stylecast_test_in", nbytes)
    finally:
        triton.unregister_system_shared_memory()
        shm.destroy_shared_memory_region(ih)
        shm.destroy_shared_memory_region(oh)
    assert triton.get_system_shared_memory_status(as_json=True).get("regions", {}) == {}


def test_health_service(url):
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(url) as ch:
        resp = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=""))
    assert resp.status == health_pb2.HealthCheckResponse.SERVING


def test_prometheus_metrics(server, triton):
    import urllib.request

    a = np.zeros((1, 16), np.float32)
    triton.infer("add_sub", add_sub_inputs(a, a))
    text = urllib.request.urlopen(f"http://127.0.0.1:{server.metrics.port}/metrics").read().decode()
    for name in ("nv_inference_request_success", "nv_inference_request_failure", "nv_inference_count",
                 "nv_inference_exec_count", "nv_inference_queue_duration_us",
                 "nv_inference_compute_infer_duration_us"):
        assert f"# TYPE {name} counter" in text
    line = next(ln for ln in text.splitlines() if ln.startswith('nv_inference_request_success{model="add_sub"'))
    assert int(line.split()[-1]) >= 1


async def _aio_round_trip(url: str) -> np.ndarray:
    import tritonclient.grpc.aio as aioclient

    async with aioclient.InferenceServerClient(url) as c:
        assert await c.is_server_live()
        a = np.ones((1, 16), np.float32)
        r = await c.infer("add_sub", add_sub_inputs(a, 2 * a))
        return r.as_numpy("OUTPUT0")


def test_aio_client(url):
    import asyncio

    np.testing.assert_array_equal(asyncio.run(_aio_round_trip(url)), np.full((1, 16), 3, np.float32))


def test_config_that_contradicts_the_graph_is_reported(triton):
    index = {m["name"]: m for m in triton.get_model_repository_index(as_json=True)["models"]}
    assert index["mismatch"]["state"] == "UNAVAILABLE"
    assert "TYPE_INT32 for input 'INPUT0', model provides FP32" in index["mismatch"]["reason"]


def _runtime_copies(checkpoint, folder, base: str, runtimes: dict[str, str]) -> None:
    """Export ``base`` into ``folder``, then a copy per name whose config picks that runtime."""
    import shutil

    from stylecast.export.onnx_export import export_to_repository

    export_to_repository(checkpoint, base, folder)
    for name, runtime in runtimes.items():
        shutil.copytree(folder / base, folder / name)
        cfg = folder / name / "config.pbtxt"
        cfg.write_text(cfg.read_text().replace(f'name: "{base}"', f'name: "{name}"') +
                       f'parameters {{ key: "stylecast_runtime" value {{ string_value: "{runtime}" }} }}\n')


def test_openvino_runtime_per_model(tmp_path, tiny_style_checkpoint):
    """A model's config can choose the OpenVINO runtime; it serves the same pixels as ONNX Runtime within one
    grey level, and an unknown runtime leaves the model UNAVAILABLE with the reason."""
    from stylecast.server.app import Server, ServerOptions

    _runtime_copies(tiny_style_checkpoint, tmp_path, "ort", {"ov": "openvino", "bad": "tensorflow"})
    srv = Server(ServerOptions(model_repository=tmp_path, port=0, metrics_port=None))
    srv.start()
    try:
        x = np.random.default_rng(0).integers(0, 256, (2, 37, 50, 3), dtype=np.uint8)
        w = np.eye(3, dtype=np.float32)[:2]
        outs = [srv.repository.get(m, "").backend.infer({"image": x, "style_weights": w}, ["stylized"], {})
                for m in ("ort", "ov")]
        diff = np.abs(outs[0]["stylized"].astype(int) - outs[1]["stylized"])
        assert diff.max() <= 1 and diff.mean() < 0.05
        index = {row[0]: row for row in srv.repository.index()}
        assert index["bad"][2] == "UNAVAILABLE" and "stylecast_runtime" in index["bad"][3]
    finally:
        srv.stop()


def test_a_registered_runtime_serves_a_model_and_only_the_chosen_one_is_built(tmp_path, tiny_style_checkpoint,
                                                                               monkeypatch):
    """Runtimes plug in through the registry; a model that picks OpenVINO never builds ONNX Runtime sessions."""
    from stylecast.server import onnx_backend, registry
    from stylecast.server.app import Server, ServerOptions

    runs: list[int] = []

    def counting(path, config, count):
        sessions = onnx_backend.ort_sessions(path, config, count)
        for s in sessions:
            inner = s.run
            s.run = lambda outputs, feeds, inner=inner: runs.append(1) or inner(outputs, feeds)
        return sessions

    built = []
    real_ort = onnx_backend.ort_sessions
    monkeypatch.setattr(onnx_backend, "ort_sessions", lambda *a: built.append(a[1].name) or real_ort(*a))
    monkeypatch.setitem(registry._RUNTIMES, "counting", counting)
    _runtime_copies(tiny_style_checkpoint, tmp_path, "plain", {"counted": "counting", "ov": "openvino"})
    srv = Server(ServerOptions(model_repository=tmp_path, port=0, metrics_port=None))
    srv.start()
    try:
        x = np.random.default_rng(0).integers(0, 256, (1, 20, 24, 3), dtype=np.uint8)
        w = np.eye(3, dtype=np.float32)[:1]
        outs = {m: srv.repository.get(m, "").backend.infer({"image": x, "style_weights": w}, ["stylized"], {})
                for m in ("plain", "counted")}
        np.testing.assert_array_equal(outs["plain"]["stylized"], outs["counted"]["stylized"])
        assert runs == [1]
        assert "ov" not in built and {"plain", "counted"} <= set(built)
    finally:
        srv.stop()
