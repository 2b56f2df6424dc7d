"""A server no client can crash or stall: a shared memory region truncated under the server, a JSON body that
inflates to 63 MB, idle streams, clients that disconnect, pages of other origins, client mistakes that used to
be answered 500, and SIGTERM with work in flight. Each test fails without its fix."""

from __future__ import annotations

import gzip
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc

from tests.images import copy_photos
from tests.models import add_sub_inputs


class Served:
    """``stylecast serve`` in its own process (a crash must not take the test run with it)."""

    def __init__(self, *args: str, env: dict | None = None) -> None:
        cmd = [sys.executable, "-m", "stylecast.cli", "serve", "--port", "0", "--http-port", "0",
               "--metrics-port", "-1", *args]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     env={**os.environ, **(env or {})})
        self.lines: list[str] = []
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError("server exited:\n" + "".join(self.lines))
            self.lines.append(line)
            if line.startswith("stylecast serving"):
                self.grpc = line.split(" on ")[1].split(" ")[0]
                self.http = line.split("http://")[1].split("/")[0]
                break
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)

    def rss_mb(self) -> float:
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        return int(next(x for x in status.splitlines() if x.startswith("VmRSS")).split()[1]) / 1024

    def live(self) -> bool:
        if self.proc.poll() is not None:
            return False
        return httpx.get(f"http://{self.http}/v2/health/live", timeout=5).status_code == 200

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


@pytest.fixture(scope="module")
def served(repo_dir):
    s = Served("--model-repository", str(repo_dir), "--no-sidecar")
    yield s
    s.stop()


def _add_sub_ok(url: str) -> None:
    with grpcclient.InferenceServerClient(url) as c:
        x = np.arange(16, dtype=np.float32)[None]
        out = c.infer("add_sub", add_sub_inputs(x, x)).as_numpy("OUTPUT0")
    np.testing.assert_array_equal(out, 2 * x)


# --- 1. shared memory that shrinks, grows or is replaced ------------------------------------------------


def _shm_infer(url: str, region: str, output: bool = False) -> tuple[str, str]:
    req = pb.ModelInferRequest(model_name="add_sub")
    for name in ("INPUT0", "INPUT1"):
        t = req.inputs.add(name=name, datatype="FP32", shape=[1, 16])
        if output:
            req.raw_input_contents.append(np.ones(16, np.float32).tobytes())
        else:
            t.parameters["shared_memory_region"].string_param = region
            t.parameters["shared_memory_byte_size"].int64_param = 64
    if output:
        o = req.outputs.add(name="OUTPUT0")
        o.parameters["shared_memory_region"].string_param = region
        o.parameters["shared_memory_byte_size"].int64_param = 64
    try:
        service_pb2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(url)).ModelInfer(req, timeout=30)
        return "OK", ""
    except grpc.RpcError as e:
        return e.code().name, e.details()


@pytest.mark.parametrize("output", [False, True], ids=["input", "output"])
def test_a_region_truncated_after_registration_is_refused_not_a_crash(served, output):
    key = f"sc_trunc_{uuid.uuid4().hex[:8]}"
    path = Path("/dev/shm") / key
    path.write_bytes(b"\0" * 8192)
    region = f"trunc_{int(output)}"
    try:
        with grpcclient.InferenceServerClient(served.grpc) as c:
            c.register_system_shared_memory(region, f"/{key}", 8192)
        assert _shm_infer(served.grpc, region, output)[0] == "OK"
        os.truncate(path, 0)
        code, msg = _shm_infer(served.grpc, region, output)
        assert code == "INVALID_ARGUMENT" and region in msg and "truncated" in msg, (code, msg)
        assert path.stat().st_size == 0  # a refused write does not grow the client's object
        os.truncate(path, 16384)  # grown again: the region works again
        assert _shm_infer(served.grpc, region, output)[0] == "OK"
        path.unlink()
        path.write_bytes(b"\0" * 10)  # replaced by a smaller object: the server keeps the one it opened
        assert _shm_infer(served.grpc, region, output)[0] == "OK"
    finally:
        with grpcclient.InferenceServerClient(served.grpc) as c:
            c.unregister_system_shared_memory(region)
        path.unlink(missing_ok=True)
    assert served.live(), "".join(served.lines[-20:])
    _add_sub_ok(served.grpc)


def test_shared_memory_routes_over_http(served):
    import tritonclient.utils.shared_memory as shm

    key = f"/sc_http_{uuid.uuid4().hex[:8]}"
    handle = shm.create_shared_memory_region("http_in", key, 128)
    try:
        x = np.arange(16, dtype=np.float32)[None]
        shm.set_shared_memory_region(handle, [x, x])
        with httpclient.InferenceServerClient(served.http) as c:
            c.register_system_shared_memory("http_in", key, 128)
            assert c.get_system_shared_memory_status()[0]["key"] == key
            ins = [httpclient.InferInput(n, [1, 16], "FP32") for n in ("INPUT0", "INPUT1")]
            ins[0].set_shared_memory("http_in", 64)
            ins[1].set_shared_memory("http_in", 64, offset=64)
            np.testing.assert_array_equal(c.infer("add_sub", ins).as_numpy("OUTPUT0"), 2 * x)
            c.unregister_system_shared_memory("http_in")
            assert c.get_system_shared_memory_status() == []
            r = httpx.post(f"http://{served.http}/v2/systemsharedmemory/region/evil/register",
                           json={"key": "../../etc/passwd", "offset": 0, "byte_size": 8})
            assert r.status_code == 400 and "invalid shared memory key" in r.json()["error"]
    finally:
        shm.destroy_shared_memory_region(handle)


# --- 2. parsing never stalls the event loop ----------------------------------------------------------


def _bomb() -> bytes:
    """61 KB of gzip inflating to a 63 MB JSON tensor."""
    n = 31_000_000
    head = json.dumps({"inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [n], "data": [0]}]})
    doc = head[: head.rindex("[0]")] + "[" + "0," * (n - 1) + "0]}]}"
    return gzip.compress(doc.encode(), 9)


def _health_latencies(url: str, stop: threading.Event) -> list[float]:
    out: list[float] = []

    def poll() -> None:
        with httpx.Client(timeout=30) as h:
            while not stop.is_set():
                t0 = time.monotonic()
                h.get(f"http://{url}/v2/health/live")
                out.append(time.monotonic() - t0)
                time.sleep(0.05)

    threading.Thread(target=poll, daemon=True).start()
    return out


@pytest.mark.parametrize("model", ["nosuch", "add_sub"])
def test_a_gzip_json_bomb_neither_stalls_health_nor_takes_memory(served, model):
    body = _bomb()
    assert len(body) < 100_000
    rss = served.rss_mb()
    stop = threading.Event()
    latencies = _health_latencies(served.http, stop)
    time.sleep(0.3)
    try:
        answers = []
        for _ in range(3):
            r = httpx.post(f"http://{served.http}/v2/models/{model}/infer", content=body, timeout=60,
                           headers={"Content-Encoding": "gzip", "Content-Type": "application/json"})
            answers.append((r.status_code, r.json()["error"]))
        time.sleep(0.3)
    finally:
        stop.set()
    if model == "nosuch":
        assert all(code == 404 for code, _ in answers), answers
    else:
        assert all(code == 413 and "--max-json-mb" in msg for code, msg in answers), answers
    assert max(latencies) < 1.0, f"health waited {max(latencies):.2f} s"
    assert served.rss_mb() - rss < 400


def test_json_tensors_have_their_own_element_limit(server, http_url):
    from stylecast.server.http import HttpServer, Limits

    small = HttpServer(server.plane, "127.0.0.1", 0, Limits(max_json_elements=20))
    try:
        body = {"inputs": [{"name": n, "datatype": "FP32", "shape": [1, 16], "data": [1.0] * 16}
                           for n in ("INPUT0", "INPUT1")]}
        r = httpx.post(f"http://127.0.0.1:{small.port}/v2/models/add_sub/infer", json=body)
        assert r.status_code == 413 and "--max-json-elements" in r.json()["error"]
        body["inputs"] = body["inputs"][:1] + [{"name": "INPUT1", "datatype": "FP32", "shape": [1, 16],
                                                "parameters": {"binary_data_size": 64}}]
        payload = json.dumps(body).encode()
        r = httpx.post(f"http://127.0.0.1:{small.port}/v2/models/add_sub/infer",
                       content=payload + np.ones(16, np.float32).tobytes(),
                       headers={"Inference-Header-Content-Length": str(len(payload))})
        assert r.status_code == 200, r.text  # binary tensors do not count
    finally:
        small.close()


def test_a_stalled_body_is_answered_408(server):
    from stylecast.server.http import HttpServer, Limits

    small = HttpServer(server.plane, "127.0.0.1", 0, Limits(body_timeout=1.0))
    try:
        with socket.create_connection(("127.0.0.1", small.port), timeout=10) as s:
            s.sendall(b"POST /v2/models/add_sub/infer HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000\r\n"
                      b"Content-Type: application/json\r\n\r\n{\"inp")
            t0 = time.monotonic()
            answer = s.recv(4096).decode()
            while "stalled" not in answer and time.monotonic() - t0 < 5:  # headers and body may come apart
                more = s.recv(4096).decode()
                if not more:
                    break
                answer += more
        assert answer.startswith("HTTP/1.1 408") and "stalled" in answer, answer
        assert time.monotonic() - t0 < 5
    finally:
        small.close()


# --- 3. idle streams do not block inference ----------------------------------------------------------


def _raw_post(port: int, path: str, body: dict) -> socket.socket:
    data = json.dumps(body).encode()
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    s.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
              f"Content-Length: {len(data)}\r\n\r\n".encode() + data)
    return s


def _cpu_share(seconds: float) -> float:
    """This process's CPU use over ``seconds``, in cores."""
    t0, c0 = time.monotonic(), time.process_time()
    time.sleep(seconds)
    return (time.process_time() - c0) / (time.monotonic() - t0)


def test_idle_streams_are_capped_and_do_not_block_unary_inference(sidecar_server, cat_on_grey):
    port = sidecar_server.http.port
    limit = sidecar_server.plane.streams.limit
    body = {"image": cat_on_grey[:64, :64].tolist(), "parameters": {"steps": 1000, "octaves": 1}}
    socks = [_raw_post(port, "/v2/models/deepdream/generate_stream", body) for _ in range(41)]
    try:
        time.sleep(2)
        refused = 0
        for s in socks:
            s.settimeout(0.5)
            try:
                head = s.recv(4096).decode()
            except TimeoutError:
                continue
            if head.startswith("HTTP/1.1 503"):
                refused += 1
                assert "--max-streams" in head
        assert refused == 41 - limit, refused
        t0 = time.monotonic()
        with httpclient.InferenceServerClient(f"127.0.0.1:{port}", network_timeout=10) as c:
            img = httpclient.InferInput("image", list(cat_on_grey.shape), "UINT8")
            img.set_data_from_numpy(cat_on_grey)
            out = c.infer("saliency", [img]).as_numpy("label")
        assert out[0] and time.monotonic() - t0 < 10
        assert httpx.get(f"http://127.0.0.1:{port}/studio.js", timeout=5).status_code == 200
        stub = service_pb2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(f"127.0.0.1:{sidecar_server.port}"))
        with pytest.raises(grpc.RpcError) as refused_grpc:
            list(stub.ModelStreamInfer(iter([pb.ModelInferRequest(model_name="deepdream")]), timeout=30))
        assert refused_grpc.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "--max-streams" in refused_grpc.value.details()
    finally:
        for s in socks:
            s.close()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _cpu_share(1.0) > 0.2:
        pass
    assert _cpu_share(1.0) < 0.2, "the streams' work went on after their clients left"


# --- 4. work stops when an HTTP client goes away -----------------------------------------------------


@pytest.mark.parametrize("route,body", [
    ("occlusion/generate", {"parameters": {"patch": 16, "stride": 8}}),
    ("occlusion/generate_stream", {"parameters": {"patch": 16, "stride": 8}}),
    ("deepdream/generate", {"parameters": {"steps": 400, "octaves": 1}}),
], ids=["occlusion", "occlusion-stream", "deepdream"])
def test_work_stops_when_the_http_client_disconnects(sidecar_server, cat_on_grey, route, body):
    s = _raw_post(sidecar_server.http.port, f"/v2/models/{route}", {"image": cat_on_grey.tolist(), **body})
    time.sleep(2.0)
    assert _cpu_share(1.0) > 0.5, "the work did not start"
    s.close()
    t0 = time.monotonic()
    while time.monotonic() - t0 < 6 and _cpu_share(0.5) > 0.2:
        pass
    assert _cpu_share(1.0) < 0.2, f"{route} kept computing after its client left"


# --- 5. pages of other origins, DNS rebinding --------------------------------------------------------


def test_foreign_origins_and_hosts_are_refused(http_url):
    base = f"http://{http_url}"
    r = httpx.post(f"{base}/v2/repository/models/add_sub/unload", content="{}",
                   headers={"Content-Type": "text/plain", "Origin": "http://evil.example"})
    assert r.status_code == 403 and "--allow-origin" in r.json()["error"]
    r = httpx.post(f"{base}/v2/repository/models/add_sub/unload", content="{}", headers={"Content-Type": "text/plain"})
    assert r.status_code == 415 and "application/json" in r.json()["error"]
    r = httpx.get(f"{base}/v2/models/add_sub/config", headers={"Host": "evil.example"})
    assert r.status_code == 403 and "loopback" in r.json()["error"]
    assert httpx.get(f"{base}/v2/models/add_sub/ready").status_code == 200
    same = httpx.post(f"{base}/v2/repository/index", json={}, headers={"Origin": base})
    assert same.status_code == 200  # the server's own page


def test_allowed_origins(server):
    from stylecast.server.http import HttpServer, Limits

    srv = HttpServer(server.plane, "127.0.0.1", 0, Limits(), allow_origins=("https://app.example",))
    try:
        base = f"http://127.0.0.1:{srv.port}"
        assert httpx.post(f"{base}/v2/repository/index", json={},
                          headers={"Origin": "https://app.example"}).status_code == 200
        assert httpx.post(f"{base}/v2/repository/index", json={},
                          headers={"Origin": "https://other.example"}).status_code == 403
    finally:
        srv.close()


# --- 6. client mistakes are 4xx, never 500 -----------------------------------------------------------

GOOD = {"inputs": [{"name": n, "datatype": "FP32", "shape": [1, 16], "data": [1.0] * 16} for n in ("INPUT0", "INPUT1")]}


def _with(**changes) -> dict:
    body = json.loads(json.dumps(GOOD))
    for path, value in changes.items():
        target = body
        keys = path.split("__")
        for k in keys[:-1]:
            target = target[int(k)] if k.isdigit() else target[k]
        target[int(keys[-1]) if keys[-1].isdigit() else keys[-1]] = value
    return body


HTTP_CASES = [
    ("GET", "/v2/models/add_sub/versions/%C2%B2/config", None, {}),
    ("GET", "/v2/models/add_sub/versions/--1/config", None, {}),
    ("GET", "/v2/models/add_sub/versions/" + "9" * 5000 + "/config", None, {}),
    ("GET", "/v2/models/add_sub/versions/%C2%B2/stats", None, {}),
    ("POST", "/v2/models/add_sub/versions/%C2%B2/infer", GOOD, {}),
    ("POST", "/v2/models/add_sub/versions/" + "9" * 5000 + "/infer", GOOD, {}),
    ("POST", "/v2/models/tiny_style/versions/%C2%B2/generate", {}, {}),
    ("POST", "/v2/models/add_sub/infer", GOOD, {"Inference-Header-Content-Length": "\xb2"}),
    ("POST", "/v2/models/add_sub/infer", _with(inputs__0__name="\ud800"), {}),
    ("POST", "/v2/models/add_sub/infer", _with(id="\ud800"), {}),
    ("POST", "/v2/models/add_sub/infer", _with(parameters={"\ud800": 1}), {}),
    ("POST", "/v2/models/add_sub/infer", _with(parameters={"k": "\ud800"}), {}),
    ("POST", "/v2/models/add_sub/infer", _with(outputs=[{"name": "\ud800"}]), {}),
    ("POST", "/v2/models/add_sub/infer", {"inputs": [{"name": "x", "datatype": "BYTES", "shape": [1],
                                                      "data": ["\ud800"]}]}, {}),
    ("POST", "/v2/models/add_sub/infer", _with(parameters={"shared_memory_byte_size": 2**70}), {}),
    ("POST", "/v2/models/add_sub/infer", _with(inputs__0__parameters={"shared_memory_byte_size": 2**70,
                                                                      "shared_memory_region": "r"}), {}),
    ("POST", "/v2/models/add_sub/infer", _with(inputs__0__shape=[2**64]), {}),
    ("POST", "/v2/models/add_sub/infer", _with(inputs__0__datatype=["UINT8"]), {}),
    ("POST", "/v2/models/add_sub/infer", _with(inputs__0__shape=[1] * 65), {}),
    ("POST", "/v2/models/add_sub/infer", _with(parameters={"binary_data_output": "no"}), {}),
    ("POST", "/v2/models/tiny_style/generate", {"\ud800": 1}, {}),
    ("POST", "/v2/models/tiny_style/generate", {"image": [[[1, 2, 3]], [[1, 2]]]}, {}),
    ("POST", "/v2/models/tiny_style/generate_stream", {"style_weights": [[1, 2], [3]]}, {}),
]


@pytest.mark.parametrize("method,path,body,headers", HTTP_CASES, ids=[str(i) for i in range(len(HTTP_CASES))])
def test_http_client_mistakes_are_4xx(http_url, method, path, body, headers):
    content = None if body is None else json.dumps(body).encode()
    extra = {k: v.encode("latin-1") for k, v in headers.items()}
    r = httpx.request(method, f"http://{http_url}{path}", content=content,
                      headers={"Content-Type": "application/json", **extra})
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:300])
    message = r.json()["error"]
    assert message and len(message) < 2000, message


GRPC_CASES = [
    ("ModelInfer", pb.ModelInferRequest(model_name="add_sub", model_version="\u00b2")),
    ("ModelInfer", pb.ModelInferRequest(model_name="add_sub", model_version="9" * 5000)),
    ("ModelConfig", pb.ModelConfigRequest(name="add_sub", version="--1")),
    ("ModelMetadata", pb.ModelMetadataRequest(name="add_sub", version="\u00b2")),
    ("ModelStatistics", pb.ModelStatisticsRequest(name="add_sub", version="9" * 5000)),
    ("ModelReady", pb.ModelReadyRequest(name="add_sub", version="\u00b2")),
]


@pytest.mark.parametrize("method,request_", GRPC_CASES, ids=[c[0] + str(i) for i, c in enumerate(GRPC_CASES)])
def test_grpc_client_mistakes_are_not_internal(url, method, request_):
    stub = service_pb2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(url))
    try:
        answer = getattr(stub, method)(request_, timeout=30)
        assert method == "ModelReady" and not answer.ready
    except grpc.RpcError as e:
        assert e.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND), (e.code(), e.details())


def test_rank_over_64_over_grpc(url):
    req = pb.ModelInferRequest(model_name="add_sub")
    for n in ("INPUT0", "INPUT1"):
        req.inputs.add(name=n, datatype="FP32", shape=[1] * 70)
        req.raw_input_contents.append(b"\0" * 4)
    with pytest.raises(grpc.RpcError) as e:
        service_pb2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(url)).ModelInfer(req, timeout=30)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "64" in e.value.details()


def test_a_huge_model_name_is_not_found_with_a_short_message(url):
    with pytest.raises(grpc.RpcError) as e:
        service_pb2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(url)).ModelConfig(
            pb.ModelConfigRequest(name="m" * 100_000), timeout=30)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND and len(e.value.details()) < 300


# --- 7. SIGTERM with work in flight ------------------------------------------------------------------


def test_sigterm_answers_work_in_flight_with_triton_errors(tmp_path, cat_on_grey):
    from stylecast.nets.images import bundled_photos

    (tmp_path / "gallery").mkdir()
    gallery = copy_photos(bundled_photos()[:4], tmp_path / "gallery")
    s = Served("--model-repository", "", "--grace", "2",
               env={"STYLECAST_GALLERY": str(gallery), "STYLECAST_CACHE": str(tmp_path / "cache")})
    try:
        body = {"image": cat_on_grey[:64, :64].tolist(), "parameters": {"steps": 1000, "octaves": 1}}
        answers: dict = {}

        def unary() -> None:
            r = httpx.post(f"http://{s.http}/v2/models/deepdream/generate", json=body, timeout=60)
            answers["generate"] = (r.status_code, r.json())

        def stream() -> None:
            with httpx.stream("POST", f"http://{s.http}/v2/models/deepdream/generate_stream", json=body,
                              timeout=60) as r:
                answers["stream"] = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: ")]

        threads = [threading.Thread(target=f) for f in (unary, stream)]
        for t in threads:
            t.start()
        time.sleep(3)
        s.proc.send_signal(signal.SIGTERM)
        for t in threads:
            t.join(timeout=30)
        assert s.proc.wait(timeout=30) == 0
    finally:
        s.stop()
    code, payload = answers["generate"]
    assert code == 503 and "shutting down" in payload["error"], answers["generate"]
    assert "shutting down" in answers["stream"][-1]["error"], answers["stream"][-1]
