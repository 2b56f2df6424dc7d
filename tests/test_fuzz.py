"""Wire-level fuzzing (hypothesis): random and mutated ModelInferRequests and technique parameters go to a
running server. Invariants: no client mistake is answered INTERNAL or UNKNOWN; a good request is still
answered bit-identically afterwards; memory stays bounded; nothing is left computing.

The runs here are bounded for CI; ``benchmarks/soak.py`` is the long, many-client soak."""

from __future__ import annotations

import resource
import threading
import time

import grpc
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc

FORBIDDEN = {"INTERNAL", "UNKNOWN"}
DATATYPES = ["BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16", "FP32",
             "FP64", "BYTES", "BF16", "", "FP8", "uint8", "\x00"]
MODELS = {"add_sub": ["INPUT0", "INPUT1"], "tiny_style": ["image", "style_weights"], "identity": ["image"]}
TRUE_DATATYPE = {"INPUT0": "FP32", "INPUT1": "FP32", "image": "UINT8", "style_weights": "FP32"}
CONTENT_FIELDS = ["bool_contents", "int_contents", "int64_contents", "uint_contents", "uint64_contents",
                  "fp32_contents", "fp64_contents", "bytes_contents"]
SETTINGS = settings(max_examples=400, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

# Half small dims, half huge ones whose products overflow 64 bits (2^32 * 2^32 wraps to 0).
dims = st.one_of(st.integers(-2, 16), st.sampled_from([2**31, 2**32, 2**33, 2**62 + 1, 2**63 - 1]))
# Strings that pass a lax check and break what follows: lone surrogates (JSON's "\ud800"), digits that
# str.isdigit() takes and int() does not, a version past int()'s 4300-digit limit, NUL, a 70 KB name.
ODD_TEXT = ["\ud800", "\udfff", "a\ud83d", "\u00b2", "\u0663", "--1", "+1", "9" * 5000, "\x00", "x" * 70000]
odd_text = st.sampled_from(ODD_TEXT)
HUGE_INTS = [2**63, 2**64, 2**70, -(2**63) - 1]
json_dims = st.one_of(dims, st.sampled_from(HUGE_INTS))
# Shapes of every rank up to 70: numpy takes at most 64 dimensions.
shapes = st.one_of(st.lists(dims, max_size=5), st.lists(st.integers(0, 1), min_size=60, max_size=70))
versions = st.sampled_from(["", "1", "-1", "x", "99", "--1", "\u00b2", "9" * 5000, "1" * 19])
param_values = st.one_of(st.integers(-(2**63), 2**63 - 1).map(lambda v: pb.InferParameter(int64_param=v)),
                         st.text(max_size=12).map(lambda v: pb.InferParameter(string_param=v)),
                         st.booleans().map(lambda v: pb.InferParameter(bool_param=v)),
                         st.floats(allow_nan=True).map(lambda v: pb.InferParameter(double_param=v)))
param_keys = st.sampled_from(["shared_memory_region", "shared_memory_byte_size", "shared_memory_offset",
                              "classification", "binary_data_size", "priority", "timeout", "x"])


def _contents(field: str):
    small = st.lists(st.integers(0, 300), max_size=20)
    return {
        "bool_contents": st.lists(st.booleans(), max_size=20),
        "int_contents": st.lists(st.integers(-(2**31), 2**31 - 1), max_size=20),
        "int64_contents": st.lists(st.integers(-(2**63), 2**63 - 1), max_size=20),
        "uint_contents": st.one_of(small, st.lists(st.integers(0, 2**32 - 1), max_size=20)),
        "uint64_contents": st.lists(st.integers(0, 2**64 - 1), max_size=20),
        "fp32_contents": st.lists(st.floats(width=32, allow_nan=True), max_size=20),
        "fp64_contents": st.lists(st.floats(allow_nan=True), max_size=20),
        "bytes_contents": st.lists(st.binary(max_size=8), max_size=20),
    }[field]


@st.composite
def tensors(draw, name: str):
    datatype = st.sampled_from(DATATYPES)
    if name in TRUE_DATATYPE:  # half the time the right datatype, so checks past the datatype are reached
        datatype = st.one_of(st.just(TRUE_DATATYPE[name]), datatype)
    t = pb.ModelInferRequest.InferInputTensor(name=name, datatype=draw(datatype),
                                              shape=draw(shapes))
    for key, value in draw(st.dictionaries(param_keys, param_values, max_size=3)).items():
        t.parameters[key].CopyFrom(value)
    if draw(st.booleans()):
        field = draw(st.sampled_from(CONTENT_FIELDS))
        getattr(t.contents, field).extend(draw(_contents(field)))
    return t


@st.composite
def requests(draw):
    model = draw(st.sampled_from(list(MODELS) + ["nope", "", "../add_sub"]))
    names = MODELS.get(model, ["image"])
    names = draw(st.lists(st.sampled_from(names + ["extra"]), max_size=3)) if draw(st.booleans()) else names
    req = pb.ModelInferRequest(model_name=model, model_version=draw(versions))
    for n in names:
        req.inputs.append(draw(tensors(n)))
    raw = draw(st.lists(st.one_of(st.just(b""), st.binary(max_size=96)), max_size=3))
    req.raw_input_contents.extend(raw)
    for out in draw(st.lists(st.sampled_from(["OUTPUT0", "stylized", "nope"]), max_size=2)):
        o = req.outputs.add(name=out)
        for key, value in draw(st.dictionaries(param_keys, param_values, max_size=2)).items():
            o.parameters[key].CopyFrom(value)
    for key, value in draw(st.dictionaries(param_keys, param_values, max_size=2)).items():
        req.parameters[key].CopyFrom(value)
    return req


def _mutate(req: pb.ModelInferRequest, data) -> pb.ModelInferRequest:
    """A good request with one field broken: the wire bytes flipped, truncated or one field replaced."""
    blob = bytearray(req.SerializeToString())
    how = data.draw(st.sampled_from(["flip", "truncate", "shape", "datatype", "raw"]))
    if how == "flip" and blob:
        i = data.draw(st.integers(0, len(blob) - 1))
        blob[i] ^= data.draw(st.integers(1, 255))
    elif how == "truncate":
        blob = blob[: data.draw(st.integers(0, len(blob)))]
    out = pb.ModelInferRequest()
    try:
        out.ParseFromString(bytes(blob))
    except Exception:  # noqa: BLE001 - unparseable bytes: send the original with a field broken instead
        out = pb.ModelInferRequest()
        out.CopyFrom(req)
    if how == "shape" and out.inputs:
        out.inputs[0].shape[:] = data.draw(st.lists(dims, max_size=5))
    elif how == "datatype" and out.inputs:
        out.inputs[0].datatype = data.draw(st.sampled_from(DATATYPES))
    elif how == "raw" and out.raw_input_contents:
        out.raw_input_contents[0] = data.draw(st.binary(max_size=128))
    return out


def _good_request() -> pb.ModelInferRequest:
    req = pb.ModelInferRequest(model_name="tiny_style")
    img = np.arange(12 * 12 * 3, dtype=np.uint8).reshape(1, 12, 12, 3)
    req.inputs.add(name="image", datatype="UINT8", shape=[1, 12, 12, 3])
    req.inputs.add(name="style_weights", datatype="FP32", shape=[1, 3])
    req.raw_input_contents.extend([img.tobytes(), np.array([[0.2, 0.3, 0.5]], np.float32).tobytes()])
    return req


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


@pytest.fixture(scope="module")
def channel(url):
    with grpc.insecure_channel(url) as ch:
        yield service_pb2_grpc.GRPCInferenceServiceStub(ch)


@pytest.fixture(scope="module")
def reference(channel):
    return channel.ModelInfer(_good_request(), timeout=30).raw_output_contents[0]


def _send(channel, req, timeout: float = 10.0) -> str:
    try:
        channel.ModelInfer(req, timeout=timeout)
        return "OK"
    except grpc.RpcError as e:
        assert e.code().name not in FORBIDDEN, (e.code().name, e.details(), req)
        return e.code().name


def _quiet(server) -> bool:
    """No scheduler of any loaded model holds a queued job."""
    return all(not mv.scheduler._pending for mv in server.repository.ready_versions())


def _assert_healthy(channel, server, reference, rss_before: float, threads_before: int) -> None:
    assert channel.ModelInfer(_good_request(), timeout=30).raw_output_contents[0] == reference
    end = time.monotonic() + 10
    while not _quiet(server) and time.monotonic() < end:
        time.sleep(0.05)
    assert _quiet(server), "work left queued after the fuzz run"
    assert threading.active_count() <= threads_before + 4, "threads keep growing"
    assert _rss_mb() - rss_before < 300, f"RSS grew {_rss_mb() - rss_before:.0f} MB"


def test_random_requests_never_get_internal(channel, server, reference):
    rss, threads = _rss_mb(), threading.active_count()
    statuses: dict[str, int] = {}

    @SETTINGS
    @given(requests())
    def run(req):
        code = _send(channel, req)
        statuses[code] = statuses.get(code, 0) + 1

    run()
    assert len(statuses) >= 2, statuses  # the strategy reaches more than one kind of answer
    _assert_healthy(channel, server, reference, rss, threads)


def test_mutated_good_requests_never_get_internal(channel, server, reference):
    rss, threads = _rss_mb(), threading.active_count()

    @SETTINGS
    @given(st.data())
    def run(data):
        _send(channel, _mutate(_good_request(), data))

    run()
    _assert_healthy(channel, server, reference, rss, threads)


TECHNIQUE_PARAMS = {
    "saliency": ["target", "smooth_samples", "smooth_sigma", "seed"],
    "gradcam": ["target"],
    "occlusion": ["target", "patch", "stride"],
    "deepdream": ["layer", "octaves", "octave_scale", "jitter", "lr", "steps", "preview_every", "seed"],
    "knn": ["k"],
}


@st.composite
def technique_requests(draw):
    model = draw(st.sampled_from(list(TECHNIQUE_PARAMS)))
    side = draw(st.sampled_from([1, 7, 32]))
    img = np.full((side, side, 3), 128, np.uint8)
    req = pb.ModelInferRequest(model_name=model)
    req.inputs.add(name="image", datatype="UINT8", shape=list(img.shape))
    req.raw_input_contents.append(img.tobytes())
    keys = st.sampled_from(TECHNIQUE_PARAMS[model] + ["bogus"])
    for key, value in draw(st.dictionaries(keys, param_values, max_size=3)).items():
        req.parameters[key].CopyFrom(value)
    return req


def test_random_technique_parameters_never_get_internal(sidecar_url):
    """Every knob with values of every type; a short deadline keeps legal-but-long jobs from piling up."""
    codes: dict[str, int] = {}
    with grpc.insecure_channel(sidecar_url) as ch:
        sc = service_pb2_grpc.GRPCInferenceServiceStub(ch)

        @settings(max_examples=40, deadline=None, derandomize=True, database=None,
                  suppress_health_check=[HealthCheck.too_slow])
        @given(technique_requests())
        def run(req):
            code = _send(sc, req, timeout=3.0)
            codes[code] = codes.get(code, 0) + 1

        run()
        assert codes.get("INVALID_ARGUMENT", 0) > 0 and codes.get("OK", 0) > 0, codes
        # nothing keeps computing: a quick job on each technique's single worker is answered promptly
        img = np.full((32, 32, 3), 128, np.uint8)
        for model in ("occlusion", "deepdream"):
            req = pb.ModelInferRequest(model_name=model)
            req.inputs.add(name="image", datatype="UINT8", shape=[32, 32, 3])
            req.raw_input_contents.append(img.tobytes())
            if model == "occlusion":
                req.parameters["stride"].int64_param = 112
                req.parameters["patch"].int64_param = 112
            else:
                req.parameters["steps"].int64_param = 1
                req.parameters["octaves"].int64_param = 1
            t0 = time.monotonic()
            sc.ModelInfer(req, timeout=30)
            assert time.monotonic() - t0 < 10, f"{model} was still busy with abandoned work"


json_values = st.recursive(st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=8)
                           | odd_text | st.sampled_from(HUGE_INTS),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                                       max_size=4), max_leaves=12)


@st.composite
def http_bodies(draw):
    """KServe v2 JSON bodies, mostly well-formed with one part broken, sometimes any JSON at all."""
    if draw(st.integers(0, 4)) == 0:
        return draw(json_values)
    inputs = []
    for name in draw(st.lists(st.sampled_from(["INPUT0", "INPUT1", "image", "x"]) | odd_text, max_size=3)):
        t = {"name": name, "datatype": draw(st.sampled_from(DATATYPES + ["FP32", "FP32"]) | json_values),
             "shape": draw(st.lists(json_dims, max_size=4) | shapes)}
        if draw(st.booleans()):
            t["data"] = draw(st.lists(json_values, max_size=20))
        if draw(st.booleans()):
            t["parameters"] = draw(st.dictionaries(st.sampled_from(["binary_data_size", "shared_memory_region",
                                                                    "shared_memory_byte_size"]), json_values,
                                                   max_size=2))
        inputs.append(t)
    body = {"inputs": inputs}
    if draw(st.booleans()):
        body["id"] = draw(json_values)
    if draw(st.booleans()):
        body["outputs"] = draw(st.lists(st.dictionaries(st.sampled_from(["name", "parameters"]), json_values,
                                                        max_size=2), max_size=2))
    if draw(st.booleans()):
        body["parameters"] = draw(json_values)
    return body


def test_random_http_bodies_never_get_500(http_url, channel, server, reference):
    import httpx

    rss, threads = _rss_mb(), threading.active_count()
    codes: dict[int, int] = {}
    with httpx.Client(base_url=f"http://{http_url}", timeout=30) as h:

        @settings(max_examples=200, deadline=None, derandomize=True, database=None,
                  suppress_health_check=[HealthCheck.too_slow])
        @given(http_bodies(), st.sampled_from(["add_sub", "tiny_style", "nope"]), st.booleans(), versions,
               st.sampled_from(["", "\u00b2", "-3", "1" * 30]))
        def run(body, model, binary_header, version, header_length):
            import json as jsonlib
            from urllib.parse import quote

            text = jsonlib.dumps(body, allow_nan=True).encode()
            length = str(len(text)) if header_length == "" else header_length
            headers = {"Inference-Header-Content-Length": length.encode()} if binary_header else {}
            path = f"/v2/models/{model}" + (f"/versions/{quote(version, safe='')}" if version else "")
            r = h.post(f"{path}/infer", content=text, headers=headers)
            assert r.status_code < 500, (r.status_code, r.text, body)
            assert r.status_code == 200 or "error" in r.json()
            codes[r.status_code] = codes.get(r.status_code, 0) + 1

        run()
    assert codes.get(400, 0) > 0, codes  # client mistakes are named as such
    _assert_healthy(channel, server, reference, rss, threads)


@st.composite
def generate_bodies(draw):
    """Triton generate bodies: the model's inputs (and odd keys) as nested, sometimes ragged, lists."""
    body = {}
    for key in draw(st.lists(st.sampled_from(["image", "style_weights", "parameters", "id"]) | odd_text,
                             max_size=3)):
        ragged = st.lists(st.lists(st.integers(0, 255), max_size=3), max_size=3)
        body[key] = draw(json_values | ragged)
    return body


def test_random_generate_bodies_never_get_500(http_url, channel, server, reference):
    import json as jsonlib

    import httpx

    rss, threads = _rss_mb(), threading.active_count()
    with httpx.Client(base_url=f"http://{http_url}", timeout=30) as h:

        @settings(max_examples=150, deadline=None, derandomize=True, database=None,
                  suppress_health_check=[HealthCheck.too_slow])
        @given(generate_bodies(), st.sampled_from(["generate", "generate_stream"]))
        def run(body, route):
            r = h.post(f"/v2/models/tiny_style/{route}", content=jsonlib.dumps(body, allow_nan=True),
                       headers={"Content-Type": "application/json"})
            assert r.status_code < 500, (r.status_code, r.text, body)
            if route == "generate":
                assert r.status_code == 200 or "error" in r.json()

        run()
    _assert_healthy(channel, server, reference, rss, threads)
