"""Dynamic batching, bounded queues, deadlines, and model control under traffic."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from tests.models import add_sub_inputs


def _slow_input(rows: int = 1):
    x = np.full((rows, 512, 512), 0.01, np.float32)
    t = grpcclient.InferInput("X", list(x.shape), "FP32")
    t.set_data_from_numpy(x)
    return t


def test_dynamic_batching_forms_batches_and_splits_rows(url):
    n = 8
    with grpcclient.InferenceServerClient(url) as c:
        before = c.get_inference_statistics("batched", as_json=True)["model_stats"][0]

    def call(k: int):
        rows = 1 + k % 2  # callers of 1 and 2 rows share batches
        a = np.full((rows, 16), k, np.float32)
        b = np.arange(rows * 16, dtype=np.float32).reshape(rows, 16)
        with grpcclient.InferenceServerClient(url) as c:
            outs = [grpcclient.InferRequestedOutput("OUTPUT0")] if k % 3 == 0 else None
            r = c.infer("batched", add_sub_inputs(a, b), outputs=outs)
            names = [o.name for o in r.get_response().outputs]
            return k, a, b, r.as_numpy("OUTPUT0"), names

    with ThreadPoolExecutor(n) as pool:
        results = list(pool.map(call, range(n)))
    for k, a, b, out0, names in results:
        np.testing.assert_array_equal(out0, a + b)  # exactly its own rows
        assert names == (["OUTPUT0"] if k % 3 == 0 else ["OUTPUT0", "OUTPUT1"])
    with grpcclient.InferenceServerClient(url) as c:
        after = c.get_inference_statistics("batched", as_json=True)["model_stats"][0]
    requests = int(after["inference_stats"]["success"]["count"]) - int(
        before.get("inference_stats", {}).get("success", {}).get("count", 0))
    executions = int(after["execution_count"]) - int(before.get("execution_count", 0))
    assert requests == n
    assert executions < requests, f"{executions} executions for {requests} requests: no batch formed"
    assert any(int(b["batch_size"]) > 2 for b in after["batch_stats"])


def test_only_same_shape_requests_share_a_batch():
    from stylecast.server.scheduler import BatchPolicy, Scheduler

    seen: list[tuple] = []

    def run(inputs, outputs, parameters, emit):
        seen.append(inputs["x"].shape)
        return {"y": inputs["x"] * 2}

    s = Scheduler("t", run, 1, BatchPolicy(True, 8, 0.2), 16, lambda jobs, err: None)
    try:
        futs = [s.submit({"x": np.ones((1, w), np.float32)}, ["y"], 1, None) for w in (3, 4, 3, 4, 3)]
        outs = [f.result(10)["y"] for f in futs]
    finally:
        s.close()
    assert sorted(seen) == [(2, 4), (3, 3)]
    assert [o.shape for o in outs] == [(1, 3), (1, 4), (1, 3), (1, 4), (1, 3)]


def test_queue_full_answers_unavailable(url):
    """'slow' has one instance and a queue of 2: a burst overflows it; the rest still succeed."""
    def call(_):
        with grpcclient.InferenceServerClient(url) as c:
            try:
                c.infer("slow", [_slow_input()])
                return "ok"
            except InferenceServerException as e:
                return e.status(), e.message()

    with ThreadPoolExecutor(12) as pool:
        results = list(pool.map(call, range(12)))
    rejected = [r for r in results if r != "ok"]
    assert results.count("ok") >= 2
    assert rejected, "a burst of 12 never overflowed a queue of 2"
    assert all(r[0] == "StatusCode.UNAVAILABLE" and "Exceeds maximum queue size" in r[1] for r in rejected)


def test_client_deadline_is_honoured(url):
    with grpcclient.InferenceServerClient(url) as c:
        t0 = time.monotonic()
        with pytest.raises(InferenceServerException) as e:
            c.infer("slow", [_slow_input(4)], client_timeout=0.01)
        assert e.value.status() == "StatusCode.DEADLINE_EXCEEDED"
        assert time.monotonic() - t0 < 5
        assert c.is_model_ready("slow")


def test_explicit_load_unload_while_requests_are_in_flight(explicit_server, repo_dir):
    url = f"127.0.0.1:{explicit_server.port}"
    with grpcclient.InferenceServerClient(url) as c:
        assert c.is_model_ready("add_sub")
        assert not c.is_model_ready("slow")
        index = {m["name"]: m for m in c.get_model_repository_index(as_json=True)["models"]}
        assert "slow" in index and index["slow"].get("state", "") == ""
        c.load_model("slow")
        assert c.is_model_ready("slow")

        results: list = []

        def call():
            with grpcclient.InferenceServerClient(url) as cc:
                try:
                    results.append(cc.infer("slow", [_slow_input()]).as_numpy("Y").shape)
                except InferenceServerException as e:
                    results.append(e.status())

        threads = [threading.Thread(target=call) for _ in range(2)]
        for t in threads:
            t.start()
        time.sleep(0.3)  # both accepted: one running, one queued
        c.unload_model("slow")
        for t in threads:
            t.join()
        assert results == [(1, 512, 512)] * 2, results  # accepted requests finished
        assert not c.is_model_ready("slow")
        with pytest.raises(InferenceServerException) as e:
            c.infer("slow", [_slow_input()])
        assert e.value.status() == "StatusCode.NOT_FOUND"
        index = {m["name"]: m for m in c.get_model_repository_index(as_json=True)["models"]}
        assert index["slow"]["state"] == "UNAVAILABLE" and index["slow"]["reason"] == "unloaded"
        with pytest.raises(InferenceServerException) as e:
            c.load_model("broken")
        assert "broken" in e.value.message()
        assert c.is_model_ready("add_sub")


def test_load_unload_refused_in_mode_none(triton):
    with pytest.raises(InferenceServerException) as e:
        triton.unload_model("add_sub")
    assert e.value.status() == "StatusCode.UNAVAILABLE" and "not allowed" in e.value.message()
    assert triton.is_model_ready("add_sub")


def test_poll_mode_picks_up_new_and_removed_models(tmp_path):
    import shutil

    from stylecast.server.repository import ControlMode, ModelRepository

    from tests.models import add_sub

    repo = ModelRepository(tmp_path, ControlMode.POLL)
    try:
        repo.start()
        assert repo.index() == []
        add_sub(tmp_path / "m" / "1" / "model.onnx")
        repo.poll_once()
        assert repo.get("m").version == 1
        add_sub(tmp_path / "m" / "2" / "model.onnx")
        repo.poll_once()
        assert repo.get("m").version == 2
        shutil.rmtree(tmp_path / "m")
        repo.poll_once()
        assert repo.index()[0][2] == "UNAVAILABLE"
    finally:
        repo.close()


def test_bearer_token_and_tls(tmp_path, repo_dir):
    import subprocess

    from stylecast.client import Client, StylecastError
    from stylecast.server.app import Server, ServerOptions

    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost"],
                   check=True, capture_output=True)
    srv = Server(ServerOptions(model_repository=repo_dir, host="localhost", port=0, metrics_port=None,
                               model_control_mode="explicit", load_models=["add_sub"], token="s3cret",
                               tls_cert=str(cert), tls_key=str(key)))
    port = srv.start()
    try:
        url = f"localhost:{port}"
        a = np.ones((1, 16), np.float32)
        with Client(url, ssl=True, root_certificates=str(cert), token="s3cret") as c:
            out = c.infer("add_sub", {"INPUT0": a, "INPUT1": a})
            np.testing.assert_array_equal(out["OUTPUT0"], 2 * a)
        with Client(url, ssl=True, root_certificates=str(cert), token="wrong", retries=0) as c:
            with pytest.raises(StylecastError) as e:
                c.infer("add_sub", {"INPUT0": a, "INPUT1": a})
            assert e.value.status.name == "UNAUTHENTICATED"
    finally:
        srv.stop()


def test_client_retries_unavailable_until_the_model_is_loaded(explicit_server):
    from stylecast.client import Client

    url = f"127.0.0.1:{explicit_server.port}"
    a = np.ones((1, 16), np.float32)
    explicit_server.repository.unload("add_sub")
    loader = threading.Timer(0.5, lambda: explicit_server.repository.load("add_sub"))
    loader.start()
    try:
        with Client(url, retries=6, backoff=0.1) as c:
            out = c.infer("add_sub", {"INPUT0": a, "INPUT1": a})  # no available version at first, then served
        np.testing.assert_array_equal(out["OUTPUT0"], 2 * a)
        with Client(url, retries=0) as c:
            explicit_server.repository.unload("add_sub")
            with pytest.raises(Exception) as e:
                c.infer("add_sub", {"INPUT0": a, "INPUT1": a})
            assert e.value.status.name == "NOT_FOUND" and "has no available versions" in e.value.message
    finally:
        loader.join()
