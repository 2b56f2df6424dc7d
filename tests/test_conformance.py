"""Conformance: the same client checks against stylecast's embedded server and genuine NVIDIA Triton
(tritonserver 2.51 from the nvidia-pytriton wheel, see tests/genuine_triton/), both serving one repository that
holds the shipped starter model unmodified. Both run in explicit model-control mode with the models
loaded at start-up, so load/unload can be checked too."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from tests.bad_requests import BAD
from tests.genuine_triton import server as triton_server
from tests.models import ADD_SUB_CONFIG, add_sub, add_sub_inputs, identity_image

ROOT = Path(__file__).resolve().parent.parent
SERVERS = ("embedded", "triton")
MODELS = ("add_sub", "identity", "starter8", "tiny_style", "broken", "starter8_trt", "starter8_gpu")
# Rows of the bad-request table that apply to this repository (the others need models only the embedded
# server's own tests build, such as the batching and version fixtures).
TABLE = [row for row in BAD if row[1] in ("nope", "add_sub", "tiny_style", "broken")]
# The text both servers give. Rows not listed differ only in wording, because the servers check in another
# order: a wrong rank, an unknown extra input, an empty tensor and malformed BYTES are reported by Triton
# as a batch-size, input-count, byte-size and data-type error, and a non-numeric version in its own words.
SAME_TEXT = {
    "unknown model": "Request for unknown model: 'nope' is not found",
    "unknown version": "Request for unknown model: 'add_sub' version 7 is not found",
    "model failed to load": "Request for unknown model: 'broken' has no available versions",
    "wrong datatype": "inference input 'INPUT0' data-type is 'INT32', but model 'add_sub' expects 'FP32'",
    "wrong shape": "unexpected shape for input 'INPUT0' for model 'add_sub'. Expected [-1,16], got [1,8]",
    "byte count mismatch": "input byte size mismatch for input 'INPUT0'",
    "missing input": "expected 2 inputs but got 1 inputs for model 'add_sub'. Got input(s) ['INPUT0'], but missing "
                     "required input(s) ['INPUT1']. Please provide all required input(s).",
    "unknown output": "unexpected inference output 'OUTPUT7' for model 'add_sub'",
    "batch above max": "inference request batch-size must be <= 8 for 'add_sub'",
    "batch sizes disagree": "batch size does not match other inputs for 'add_sub'",
    "image as float": "inference input 'image' data-type is 'FP32', but model 'tiny_style' expects 'UINT8'",
    "image with 4 channels": "Expected [-1,-1,-1,3], got [1,8,8,4]",
    "style weights of wrong length": "unexpected shape for input 'style_weights' for model 'tiny_style'. "
                                     "Expected [-1,3], got [1,5]",
    "unregistered shared memory": "Unable to find shared memory region: 'nowhere'",
}

if not triton_server.available():
    if os.environ.get("CI"):
        raise RuntimeError(f"genuine Triton is missing: {triton_server.VENV} (setup.sh builds it)")
    pytest.skip("genuine Triton not installed (bash setup.sh builds .venv-triton)", allow_module_level=True)


@pytest.fixture(scope="module")
def repository(tmp_path_factory, tiny_style_checkpoint) -> Path:
    from stylecast.export.onnx_export import export_to_repository

    root = tmp_path_factory.mktemp("conformance")
    shutil.copytree(ROOT / "model_repository" / "starter8", root / "starter8")
    add_sub(root / "add_sub" / "1" / "model.onnx")
    (root / "add_sub" / "config.pbtxt").write_text(ADD_SUB_CONFIG)
    identity_image(root / "identity" / "1" / "model.onnx")
    (root / "identity" / "config.pbtxt").write_text(
        'name: "identity"\nplatform: "onnxruntime_onnx"\nmax_batch_size: 4\n'
        'input [ { name: "image" data_type: TYPE_UINT8 dims: [ -1, -1, 3 ] } ]\n'
        'output [ { name: "stylized" data_type: TYPE_UINT8 dims: [ -1, -1, 3 ] } ]\n')
    export_to_repository(tiny_style_checkpoint, "tiny_style", root)
    production_configs(root)
    (root / "broken" / "1").mkdir(parents=True)
    (root / "broken" / "1" / "model.onnx").write_bytes(b"this is not an onnx file")
    (root / "broken" / "config.pbtxt").write_text('name: "broken"\nplatform: "onnxruntime_onnx"\n')
    return root


def production_configs(root: Path) -> None:
    """The shipped model with `stylecast configure` production settings: TensorRT fp16 with a pinned
    profile and warm-up (loads on a CPU machine, the accelerator applies on GPUs), and KIND_GPU (which a
    machine without a GPU must refuse)."""
    from stylecast.cli import main

    for name, extra in (("starter8_trt", ["--instance-kind", "auto"]), ("starter8_gpu", ["--instance-kind", "gpu"])):
        shutil.copytree(root / "starter8", root / name)
        cfg = root / name / "config.pbtxt"
        cfg.write_text(cfg.read_text().replace('name: "starter8"', f'name: "{name}"'))
        assert main(["configure", str(root / name), "--tensorrt", "--max-batch-size", "8", "--trt-shapes",
                     "1x64x64,4x512x512,8x1080x1920", "--warmup", "64x64", "--warmup", "96x80", *extra]) == 0


@pytest.fixture(scope="module")
def urls(repository, tmp_path_factory):
    from stylecast.server.app import Server, ServerOptions
    from stylecast.server.repository import ControlMode

    embedded = Server(ServerOptions(model_repository=repository, port=0, metrics_port=None, http_port=0,
                                    model_control_mode=ControlMode.EXPLICIT, load_models=list(MODELS)))
    embedded.start()
    try:
        with triton_server.Triton(repository, tmp_path_factory.mktemp("triton"), explicit=True, models=MODELS) as t:
            yield {"embedded": f"127.0.0.1:{embedded.port}", "triton": t.url,
                   "embedded_http": f"127.0.0.1:{embedded.http.port}", "triton_http": t.http_url}
    finally:
        embedded.stop()


@pytest.fixture(scope="module")
def grpc_urls(urls):
    return {k: urls[k] for k in SERVERS}


@pytest.fixture(params=SERVERS)
def client(request, urls):
    with grpcclient.InferenceServerClient(urls[request.param]) as c:
        yield c


@pytest.fixture(params=SERVERS)
def http(request, urls):
    import tritonclient.http as httpclient

    with httpclient.InferenceServerClient(urls[f"{request.param}_http"]) as c:
        yield c


def test_shipped_repository_loads_unmodified(client):
    index = {m["name"]: m.get("state") for m in client.get_model_repository_index(as_json=True)["models"]}
    assert all(index[m] == "READY" for m in ("add_sub", "identity", "starter8", "tiny_style", "starter8_trt")), index
    assert index["broken"] == "UNAVAILABLE" and not client.is_model_ready("broken")
    assert index["starter8_gpu"] == "UNAVAILABLE"  # KIND_GPU on a machine without a GPU


def test_production_config_serves_the_same_images(client):
    x = np.random.default_rng(1).integers(0, 256, (1, 40, 56, 3), dtype=np.uint8)
    w = np.zeros((1, 8), np.float32)
    w[0, 2] = 1
    outs = []
    for model in ("starter8", "starter8_trt"):
        ins = [grpcclient.InferInput("image", list(x.shape), "UINT8"),
               grpcclient.InferInput("style_weights", [1, 8], "FP32")]
        ins[0].set_data_from_numpy(x)
        ins[1].set_data_from_numpy(w)
        outs.append(client.infer(model, ins).as_numpy("stylized"))
    np.testing.assert_array_equal(outs[0], outs[1])


def test_metadata_and_config_agree(grpc_urls):
    seen = {}
    for name, url in grpc_urls.items():
        with grpcclient.InferenceServerClient(url) as c:
            seen[name] = {}
            for model in ("add_sub", "starter8", "tiny_style"):
                meta = c.get_model_metadata(model, as_json=True)
                cfg = c.get_model_config(model, as_json=True)["config"]
                seen[name][model] = (
                    meta["platform"], sorted((t["name"], t["datatype"], t["shape"]) for t in meta["inputs"]),
                    sorted((t["name"], t["datatype"], t["shape"]) for t in meta["outputs"]),
                    cfg.get("max_batch_size"), cfg.get("parameters"), "dynamic_batching" in cfg)
    assert seen["embedded"] == seen["triton"]


def test_stylized_images_agree(grpc_urls):
    """The same ONNX graph on ONNX Runtime's CPU provider behind both servers: bit-exact uint8."""
    from PIL import Image
    from stylecast.client import Client
    from stylecast.nets.images import bundled_photos

    photo = np.asarray(Image.open(dict(bundled_photos())["skimage_chelsea"]).convert("RGB"))[:151, :203]
    outs = {}
    for name, url in grpc_urls.items():
        with Client(url) as c:
            outs[name] = [c.stylize(photo, "starry_night"), c.stylize(photo, {"great_wave": 0.5, "cafe_terrace": 0.5}),
                          c.stylize(photo, "red", model="tiny_style")]
    for a, b in zip(outs["embedded"], outs["triton"], strict=True):
        assert a.shape == photo.shape
        np.testing.assert_array_equal(a, b)


def test_cli_stylize_through_both_servers_writes_the_same_image(grpc_urls, tmp_path):
    from PIL import Image
    from stylecast.nets.images import bundled_photos

    from stylecast.cli import main

    src = dict(bundled_photos())["skimage_coffee"]
    files = {}
    for name, url in grpc_urls.items():
        files[name] = tmp_path / f"{name}.png"
        assert main(["stylize", str(src), "-o", str(files[name]), "--style", "langlois_bridge", "--url", url]) == 0
    a, b = (np.asarray(Image.open(files[n])) for n in SERVERS)
    assert a.shape == np.asarray(Image.open(src).convert("RGB")).shape
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("case", TABLE, ids=[c[0] for c in TABLE])
def test_bad_requests_get_the_same_status(grpc_urls, case):
    _, model, make_inputs, kwargs, status, _ = case
    codes = {}
    for name, url in grpc_urls.items():
        with grpcclient.InferenceServerClient(url) as c:
            with pytest.raises(InferenceServerException) as e:
                c.infer(model, make_inputs(), **kwargs)
            codes[name] = (e.value.status(), e.value.message())
            ones = [np.ones((1, 16), np.float32)] * 2
            assert c.infer("add_sub", add_sub_inputs(*ones)).as_numpy("OUTPUT0")[0, 0] == 2  # still serving
    assert codes["embedded"][0] == codes["triton"][0] == f"StatusCode.{status}", codes
    shared = SAME_TEXT.get(case[0])
    if shared is not None:
        assert shared in codes["embedded"][1] and shared in codes["triton"][1], codes



def test_explicit_unload_and_load(client):
    ones = [np.ones((1, 16), np.float32)] * 2
    client.unload_model("add_sub")
    assert not client.is_model_ready("add_sub")
    with pytest.raises(InferenceServerException) as e:
        client.infer("add_sub", add_sub_inputs(*ones))
    assert e.value.status() == "StatusCode.NOT_FOUND"
    assert "Request for unknown model: 'add_sub' has no available versions" in e.value.message()
    client.load_model("add_sub")
    assert client.is_model_ready("add_sub")
    np.testing.assert_array_equal(client.infer("add_sub", add_sub_inputs(*ones)).as_numpy("OUTPUT1"), 0 * ones[0])


def _unregister_when_released(client) -> None:
    """Genuine Triton releases a request's hold on its regions after the answer is sent; on a loaded
    machine an unregister right after the call can land first and fail (INTERNAL), so retry briefly."""
    import time

    for _ in range(50):
        try:
            client.unregister_system_shared_memory()
            return
        except InferenceServerException as e:
            if "Failed to unregister" not in str(e):
                raise
            time.sleep(0.1)
    client.unregister_system_shared_memory()


def test_system_shared_memory_round_trip(client, request):
    import tritonclient.utils.shared_memory as shm

    a, b = np.arange(16, dtype=np.float32)[None], np.full((1, 16), 3.0, np.float32)
    nbytes, tag = a.nbytes, request.node.callspec.id
    ih = shm.create_shared_memory_region(f"in_{tag}", f"/conf_in_{tag}", 2 * nbytes)
    oh = shm.create_shared_memory_region(f"out_{tag}", f"/conf_out_{tag}", 2 * nbytes)
    try:
        shm.set_shared_memory_region(ih, [a])
        shm.set_shared_memory_region(ih, [b], offset=nbytes)
        client.register_system_shared_memory("in", f"/conf_in_{tag}", 2 * nbytes)
        client.register_system_shared_memory("out", f"/conf_out_{tag}", 2 * nbytes)
        status = client.get_system_shared_memory_status(as_json=True)["regions"]
        assert status["in"]["key"] == f"/conf_in_{tag}" and int(status["out"]["byte_size"]) == 2 * nbytes
        ins = add_sub_inputs(a, b)
        ins[0].set_shared_memory("in", nbytes)
        ins[1].set_shared_memory("in", nbytes, offset=nbytes)
        outs = [grpcclient.InferRequestedOutput(n) for n in ("OUTPUT0", "OUTPUT1")]
        outs[0].set_shared_memory("out", nbytes)
        outs[1].set_shared_memory("out", nbytes, offset=nbytes)
        client.infer("add_sub", ins, outputs=outs)
        np.testing.assert_array_equal(shm.get_contents_as_numpy(oh, np.float32, [1, 16]), a + b)
        np.testing.assert_array_equal(shm.get_contents_as_numpy(oh, np.float32, [1, 16], offset=nbytes), a - b)
        with pytest.raises(InferenceServerException) as e:
            client.register_system_shared_memory("in", f"/conf_in_{tag}", nbytes)
        assert e.value.status() == "StatusCode.ALREADY_EXISTS"
    finally:
        _unregister_when_released(client)
        shm.destroy_shared_memory_region(ih)
        shm.destroy_shared_memory_region(oh)
    assert client.get_system_shared_memory_status(as_json=True).get("regions", {}) == {}


def test_streaming_answers_in_order_and_errors_stay_in_the_stream(client):
    import queue

    answers: queue.Queue = queue.Queue()
    client.start_stream(callback=lambda result, error: answers.put((result, error)))
    try:
        for k in range(4):
            x = np.full((1, 16), float(k), np.float32)
            client.async_stream_infer("add_sub", add_sub_inputs(x, x), request_id=str(k))
        client.async_stream_infer("nope", add_sub_inputs(x, x), request_id="bad")
        got = [answers.get(timeout=30) for _ in range(5)]
    finally:
        client.stop_stream()
    assert [r.get_response().id for r, _ in got[:4]] == ["0", "1", "2", "3"]
    assert [float(r.as_numpy("OUTPUT0")[0, 0]) for r, _ in got[:4]] == [0.0, 2.0, 4.0, 6.0]
    assert got[4][0] is None and "Request for unknown model: 'nope' is not found" in got[4][1].message()


def test_statistics_count_inferences(client):
    def counts():
        s = client.get_inference_statistics("add_sub", as_json=True)["model_stats"][0]
        return int(s.get("inference_count", 0)), int(s.get("execution_count", 0)), \
            int(s["inference_stats"]["success"].get("count", 0))

    before = counts()
    x = np.ones((2, 16), np.float32)
    for _ in range(3):
        client.infer("add_sub", add_sub_inputs(x, x))
    after = _settled(counts, lambda c: c[2] - before[2] >= 3)
    assert (after[0] - before[0], after[1] - before[1], after[2] - before[2]) == (6, 3, 3)


STAT_FIELDS = ("success", "fail", "queue", "compute_input", "compute_infer", "compute_output")


def _settled(fetch, done, timeout: float = 10.0):
    """``fetch()`` once ``done(result)`` holds: Triton records a request's statistics after it has sent the
    response, so on a loaded machine they can lag the client by a moment."""
    end = time.monotonic() + timeout
    result = fetch()
    while not done(result) and time.monotonic() < end:
        time.sleep(0.05)
        result = fetch()
    return result


def test_statistics_agree_field_by_field(grpc_urls):
    """After identical traffic, both servers report the same counts in every field Triton reports, in
    inference_stats and batch_stats, with durations present and plausible."""
    deltas = {}
    for name, url in grpc_urls.items():
        with grpcclient.InferenceServerClient(url) as c:
            def stats():
                return c.get_inference_statistics("identity", as_json=True)["model_stats"][0]

            before = stats()
            img = grpcclient.InferInput("image", [1, 24, 32, 3], "UINT8")
            img.set_data_from_numpy(np.zeros((1, 24, 32, 3), np.uint8))
            for _ in range(4):
                c.infer("identity", [img])
            t0 = time.time_ns()
            done = int(before.get("inference_stats", {}).get("success", {}).get("count", 0)) + 4
            after = _settled(stats, lambda a, done=done: int(a["inference_stats"]["success"]["count"]) >= done)
            inf_b, inf_a = before.get("inference_stats", {}), after["inference_stats"]
            delta = {f: int(inf_a.get(f, {}).get("count", 0)) - int(inf_b.get(f, {}).get("count", 0))
                     for f in STAT_FIELDS}
            ns = {f: int(inf_a.get(f, {}).get("ns", 0)) - int(inf_b.get(f, {}).get("ns", 0)) for f in STAT_FIELDS}
            batch = {b["batch_size"]: b for b in after.get("batch_stats", [])}
            assert "1" in {str(k) for k in batch}, after
            b1 = batch.get(1) or batch.get("1")
            counts = {f: int(b1[f]["count"]) for f in ("compute_input", "compute_infer", "compute_output")}
            assert len(set(counts.values())) == 1, (name, counts)
            for f in ("compute_input", "compute_infer", "compute_output", "success", "queue"):
                assert ns[f] > 0, (name, f, ns)  # present
            assert ns["compute_infer"] < ns["success"], (name, ns)  # plausible: a part of the whole request
            assert 0 < int(after["last_inference"]) <= t0 // 10**6 + 1000
            deltas[name] = delta
    assert deltas["embedded"] == deltas["triton"], deltas
    assert deltas["embedded"]["success"] == 4 and deltas["embedded"]["compute_input"] == 4


# --- HTTP/REST: tritonclient.http against both servers, the same checks ------------------------------


def _http_starter8_inputs(x: np.ndarray, w: np.ndarray):
    import tritonclient.http as httpclient

    ins = [httpclient.InferInput("image", list(x.shape), "UINT8"),
           httpclient.InferInput("style_weights", list(w.shape), "FP32")]
    ins[0].set_data_from_numpy(x)
    ins[1].set_data_from_numpy(w)
    return ins


def test_http_health_metadata_and_index(http):
    assert http.is_server_live() and http.is_model_ready("starter8") and not http.is_model_ready("broken")
    meta = http.get_model_metadata("starter8")
    assert {(t["name"], t["datatype"], tuple(t["shape"])) for t in meta["inputs"]} == {
        ("image", "UINT8", (-1, -1, -1, 3)), ("style_weights", "FP32", (-1, 8))}
    cfg = http.get_model_config("starter8")
    assert cfg["max_batch_size"] == 8 and cfg["name"] == "starter8"
    index = {m["name"]: m.get("state") for m in http.get_model_repository_index()}
    assert index["starter8"] == "READY" and index["broken"] == "UNAVAILABLE"


def test_http_infer_agrees_across_servers_and_with_grpc(urls):
    import tritonclient.http as httpclient

    x = np.random.default_rng(3).integers(0, 256, (2, 36, 44, 3), dtype=np.uint8)
    w = np.zeros((2, 8), np.float32)
    w[0, 0], w[1, 5] = 1, 1
    outs = {}
    for name in SERVERS:
        with httpclient.InferenceServerClient(urls[f"{name}_http"]) as c:
            outs[name] = c.infer("starter8", _http_starter8_inputs(x, w)).as_numpy("stylized")
    with grpcclient.InferenceServerClient(urls["embedded"]) as g:
        ins = [grpcclient.InferInput("image", list(x.shape), "UINT8"),
               grpcclient.InferInput("style_weights", list(w.shape), "FP32")]
        ins[0].set_data_from_numpy(x)
        ins[1].set_data_from_numpy(w)
        via_grpc = g.infer("starter8", ins).as_numpy("stylized")
    np.testing.assert_array_equal(outs["embedded"], outs["triton"])
    np.testing.assert_array_equal(outs["embedded"], via_grpc)


@pytest.mark.parametrize("model,case", [("nope", "unknown model"), ("add_sub", "wrong datatype"),
                                        ("add_sub", "missing input")])
def test_http_errors_agree(urls, model, case):
    import tritonclient.http as httpclient

    def inputs():
        x = np.ones((1, 16), np.float32)
        t0 = httpclient.InferInput("INPUT0", [1, 16], "INT32" if case == "wrong datatype" else "FP32")
        t0.set_data_from_numpy(x.astype(np.int32) if case == "wrong datatype" else x)
        if case == "missing input":
            return [t0]
        t1 = httpclient.InferInput("INPUT1", [1, 16], "FP32")
        t1.set_data_from_numpy(x)
        return [t0, t1]

    got = {}
    for name in SERVERS:
        with httpclient.InferenceServerClient(urls[f"{name}_http"]) as c:
            with pytest.raises(InferenceServerException) as e:
                c.infer(model, inputs())
            got[name] = (e.value.status(), e.value.message())
    assert got["embedded"][0] == got["triton"][0], got
    shared = SAME_TEXT.get(case)
    assert shared in got["embedded"][1] and shared in got["triton"][1], got


def test_http_statistics_agree(urls):
    import tritonclient.http as httpclient

    x = np.zeros((1, 24, 32, 3), np.uint8)
    deltas = {}
    for name in SERVERS:
        with httpclient.InferenceServerClient(urls[f"{name}_http"]) as c:
            before = c.get_inference_statistics("identity")["model_stats"][0].get("inference_stats", {})
            t = httpclient.InferInput("image", list(x.shape), "UINT8")
            t.set_data_from_numpy(x)
            for _ in range(2):
                c.infer("identity", [t])
            done = before.get("success", {}).get("count", 0) + 2
            after = _settled(lambda: c.get_inference_statistics("identity")["model_stats"][0]["inference_stats"],
                             lambda a, done=done: a["success"]["count"] >= done)
            deltas[name] = {f: after.get(f, {}).get("count", 0) - before.get(f, {}).get("count", 0)
                            for f in STAT_FIELDS}
            assert isinstance(after["success"]["count"], int)  # numbers, not strings, as Triton writes them
    assert deltas["embedded"] == deltas["triton"] and deltas["embedded"]["compute_output"] == 2, deltas
