"""KServe v2 over HTTP/REST: tritonclient.http works unmodified, answers are bit-identical to gRPC, errors
carry Triton's JSON and HTTP status, decoupled techniques stream progress as server-sent events."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

RNG = np.random.default_rng(7)
IMAGE = RNG.integers(0, 256, (2, 20, 28, 3), dtype=np.uint8)
WEIGHTS = np.array([[0.2, 0.3, 0.5], [0.0, 1.0, 0.0]], np.float32)


def _inputs(module, binary: bool = True):
    img = module.InferInput("image", list(IMAGE.shape), "UINT8")
    w = module.InferInput("style_weights", list(WEIGHTS.shape), "FP32")
    if module is httpclient:
        img.set_data_from_numpy(IMAGE, binary_data=binary)
        w.set_data_from_numpy(WEIGHTS, binary_data=binary)
    else:
        img.set_data_from_numpy(IMAGE)
        w.set_data_from_numpy(WEIGHTS)
    return [img, w]


@pytest.fixture()
def http(http_url):
    with httpclient.InferenceServerClient(http_url) as c:
        yield c


def test_health_metadata_and_config(http, triton):
    assert http.is_server_live() and http.is_model_ready("tiny_style")
    assert http.is_server_ready() == triton.is_server_ready()  # False here: the fixture holds broken models
    assert not http.is_model_ready("nope")
    meta = http.get_server_metadata()
    assert meta["name"] == "stylecast" and "binary_tensor_data" in meta["extensions"]
    m = http.get_model_metadata("tiny_style")
    assert m["inputs"][0] == {"name": "image", "datatype": "UINT8", "shape": [-1, -1, -1, 3]}
    assert m == triton.get_model_metadata("tiny_style", as_json=True) | {"inputs": m["inputs"]} | {
        "outputs": m["outputs"]}
    cfg = http.get_model_config("tiny_style")
    assert cfg["max_batch_size"] == 8 and cfg["parameters"]["styles"]["string_value"] == "red,green,blue"


@pytest.mark.parametrize("binary", [True, False])
def test_infer_is_bit_identical_to_grpc(http, triton, binary):
    out = [httpclient.InferRequestedOutput("stylized", binary_data=binary)]
    via_http = http.infer("tiny_style", _inputs(httpclient, binary), outputs=out).as_numpy("stylized")
    via_grpc = triton.infer("tiny_style", _inputs(grpcclient)).as_numpy("stylized")
    assert via_http.dtype == np.uint8 and via_http.shape == IMAGE.shape
    np.testing.assert_array_equal(via_http, via_grpc)
    assert not np.array_equal(via_http[0], via_http[1])  # the two rows got their own weights


def test_errors_carry_status_and_the_grpc_message(http, triton):
    with pytest.raises(InferenceServerException) as h:
        http.infer("nope", _inputs(httpclient))
    with pytest.raises(InferenceServerException) as g:
        triton.infer("nope", _inputs(grpcclient))
    assert h.value.status() == "404" and h.value.message() == g.value.message()
    bad = _inputs(httpclient)
    bad[1].set_data_from_numpy(np.array([[np.nan, 0, 1], [0, 1, 0]], np.float32))
    with pytest.raises(InferenceServerException) as e:
        http.infer("tiny_style", bad)
    assert e.value.status() == "400" and "'style_weights'" in e.value.message()


CLAIMS_64_BYTES = (b'{"inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [1, 16], '
                   b'"parameters": {"binary_data_size": 64}}]}')


@pytest.mark.parametrize("body,headers,code,text", [
    (b"{not json", {}, 400, "malformed JSON"),
    (b'{"inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [1, 16], "data": [1]}]}', {}, 400,
     "unexpected number of elements 1"),
    (CLAIMS_64_BYTES, {"Inference-Header-Content-Length": str(len(CLAIMS_64_BYTES))}, 400,
     "exceeds the binary data sent"),
    (b'{"inputs": 5}', {}, 400, "must list its 'inputs'"),
    (b"{}", {"Inference-Header-Content-Length": "99"}, 400, "does not fit"),
    (b"x" * (9 << 20), {}, 413, "exceeds the limit"),
])
def test_malformed_http_requests(http_url, body, headers, code, text):
    r = httpx.post(f"http://{http_url}/v2/models/add_sub/infer", content=body, headers=headers, timeout=30)
    assert r.status_code == code and text in r.json()["error"], r.text


def test_json_tensors_and_add_sub_over_plain_http(http_url):
    x = list(range(16))
    body = {"inputs": [{"name": n, "datatype": "FP32", "shape": [1, 16], "data": [x]} for n in ("INPUT0", "INPUT1")],
            "outputs": [{"name": "OUTPUT0"}]}
    r = httpx.post(f"http://{http_url}/v2/models/add_sub/infer", json=body, timeout=30)
    assert r.status_code == 200, r.text
    out = r.json()["outputs"][0]
    assert out["name"] == "OUTPUT0" and out["shape"] == [1, 16] and out["data"] == [2.0 * v for v in x]


def test_statistics_report_every_duration_with_equal_counts(http):
    for _ in range(3):
        http.infer("tiny_style", _inputs(httpclient))
    s = http.get_inference_statistics("tiny_style")["model_stats"][0]
    inf = s["inference_stats"]
    counts = {k: inf[k]["count"] for k in ("compute_input", "compute_infer", "compute_output", "success", "queue")}
    assert len(set(counts.values())) == 1 and counts["success"] >= 3, counts
    assert all(inf[k]["ns"] > 0 for k in counts)
    for b in s["batch_stats"]:
        assert b["compute_input"]["count"] == b["compute_infer"]["count"] == b["compute_output"]["count"] > 0


def test_repository_index_and_explicit_load_unload(repo_dir):
    from stylecast.server.app import Server, ServerOptions
    from stylecast.server.repository import ControlMode

    srv = Server(ServerOptions(model_repository=repo_dir, port=0, metrics_port=None, http_port=0,
                               model_control_mode=ControlMode.EXPLICIT, load_models=["add_sub"]))
    srv.start()
    try:
        with httpclient.InferenceServerClient(f"127.0.0.1:{srv.http.port}") as c:
            index = {m["name"]: m.get("state") for m in c.get_model_repository_index()}
            assert index["add_sub"] == "READY" and index.get("identity") != "READY"
            c.load_model("identity")
            assert c.is_model_ready("identity")
            c.unload_model("identity")
            assert not c.is_model_ready("identity")
            with pytest.raises(InferenceServerException) as e:
                c.load_model("does_not_exist")
            assert e.value.status() in ("400", "404")
    finally:
        srv.stop()


def test_token_guards_http_but_not_health(repo_dir):
    from stylecast.server.app import Server, ServerOptions

    srv = Server(ServerOptions(model_repository=repo_dir, port=0, metrics_port=None, http_port=0, token="s3cret"))
    srv.start()
    try:
        base = f"http://127.0.0.1:{srv.http.port}"
        assert httpx.get(f"{base}/v2/health/live").status_code == 200
        assert httpx.get(f"{base}/v2/models/add_sub").status_code == 401
        ok = httpx.get(f"{base}/v2/models/add_sub", headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200 and ok.json()["name"] == "add_sub"
    finally:
        srv.stop()


def test_decoupled_technique_streams_progress_as_server_sent_events(sidecar_server):
    base = f"http://127.0.0.1:{sidecar_server.http.port}"
    body = {"class_index": [7], "parameters": {"steps": 4, "size": 32, "preview_every": 2}}
    events = []
    with httpx.stream("POST", f"{base}/v2/models/class_visualization/generate_stream", json=body, timeout=120) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
    steps = [e["step"] for e in events if "step" in e]
    assert steps == [1, 2, 3, 4], events
    assert [("image" in e) for e in events[:4]] == [False, True, False, True]  # a preview every 2 steps
    final = events[-1]
    assert final["steps"] == 4 and np.array(final["image"], np.uint8).shape == (32, 32, 3)
    assert final["parameters"]["triton_final_response"] is True
    bad = httpx.post(f"{base}/v2/models/class_visualization/generate_stream",
                     json={"class_index": [7], "parameters": {"steps": 0}}, timeout=30)
    assert bad.status_code == 400 and "steps" in bad.json()["error"]
