"""Bad requests get the right gRPC status and a message that says what to fix; the server keeps serving."""

from __future__ import annotations

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.grpc import service_pb2 as pb
from tritonclient.utils import InferenceServerException


def raw_input(name, datatype, shape, data: bytes):
    """An input whose raw bytes may disagree with its declared shape (tritonclient would refuse to build it)."""
    t = grpcclient.InferInput(name, shape, datatype)
    t._raw_content = data
    t._input.ClearField("contents")
    return t


F = np.zeros((1, 16), np.float32)


def good(name):
    t = grpcclient.InferInput(name, [1, 16], "FP32")
    t.set_data_from_numpy(F)
    return t


def typed(name, arr, dt):
    t = grpcclient.InferInput(name, list(arr.shape), dt)
    t.set_data_from_numpy(arr)
    return t


BAD = [
    ("unknown model", "nope", lambda: [good("INPUT0"), good("INPUT1")], {}, "NOT_FOUND",
     "Request for unknown model: 'nope' is not found"),
    ("unknown version", "add_sub", lambda: [good("INPUT0"), good("INPUT1")], {"model_version": "7"}, "NOT_FOUND",
     "Request for unknown model: 'add_sub' version 7 is not found"),
    ("non-numeric version", "add_sub", lambda: [good("INPUT0"), good("INPUT1")], {"model_version": "x"},
     "INVALID_ARGUMENT", "invalid model version 'x'"),
    ("model failed to load", "broken", lambda: [good("INPUT0")], {}, "NOT_FOUND", "has no available versions"),
    ("wrong datatype", "add_sub", lambda: [typed("INPUT0", F.astype(np.int32), "INT32"), good("INPUT1")], {},
     "INVALID_ARGUMENT", "inference input 'INPUT0' data-type is 'INT32', but model 'add_sub' expects 'FP32'"),
    ("wrong shape", "add_sub", lambda: [typed("INPUT0", np.zeros((1, 8), np.float32), "FP32"), good("INPUT1")], {},
     "INVALID_ARGUMENT", "unexpected shape for input 'INPUT0' for model 'add_sub'. Expected [-1,16], got [1,8]"),
    ("wrong rank", "add_sub", lambda: [typed("INPUT0", np.zeros((16,), np.float32), "FP32"), good("INPUT1")], {},
     "INVALID_ARGUMENT", "unexpected shape for input 'INPUT0'"),
    ("byte count mismatch", "add_sub", lambda: [raw_input("INPUT0", "FP32", [1, 16], b"\0" * 60), good("INPUT1")],
     {}, "INVALID_ARGUMENT", "input byte size mismatch for input 'INPUT0'. Expected 64, got 60"),
    ("missing input", "add_sub", lambda: [good("INPUT0")], {}, "INVALID_ARGUMENT",
     "missing required input(s) ['INPUT1']"),
    ("unknown input", "add_sub", lambda: [good("INPUT0"), good("INPUT1"), good("INPUT9")], {}, "INVALID_ARGUMENT",
     "unexpected inference input 'INPUT9' for model 'add_sub'"),
    ("unknown output", "add_sub", lambda: [good("INPUT0"), good("INPUT1")],
     {"outputs": [grpcclient.InferRequestedOutput("OUTPUT7")]}, "INVALID_ARGUMENT",
     "unexpected inference output 'OUTPUT7' for model 'add_sub'"),
    ("batch above max", "add_sub", lambda: [typed("INPUT0", np.zeros((9, 16), np.float32), "FP32"),
                                            typed("INPUT1", np.zeros((9, 16), np.float32), "FP32")], {},
     "INVALID_ARGUMENT", "inference request batch-size must be <= 8 for 'add_sub'"),
    ("empty tensor", "add_sub", lambda: [typed("INPUT0", np.zeros((0, 16), np.float32), "FP32"),
                                         typed("INPUT1", np.zeros((0, 16), np.float32), "FP32")], {},
     "INVALID_ARGUMENT", "has no elements"),
    ("batch sizes disagree", "add_sub",
     lambda: [typed("INPUT0", np.zeros((2, 16), np.float32), "FP32"), good("INPUT1")], {}, "INVALID_ARGUMENT",
     "batch size does not match other inputs for 'add_sub'"),
    ("image as float", "tiny_style", lambda: [typed("image", np.zeros((1, 8, 8, 3), np.float32), "FP32"),
                                              typed("style_weights", np.ones((1, 3), np.float32), "FP32")], {},
     "INVALID_ARGUMENT", "inference input 'image' data-type is 'FP32', but model 'tiny_style' expects 'UINT8'"),
    ("image with 4 channels", "tiny_style", lambda: [typed("image", np.zeros((1, 8, 8, 4), np.uint8), "UINT8"),
                                                     typed("style_weights", np.ones((1, 3), np.float32), "FP32")],
     {}, "INVALID_ARGUMENT", "Expected [-1,-1,-1,3], got [1,8,8,4]"),
    ("style weights of wrong length", "tiny_style",
     lambda: [typed("image", np.zeros((1, 8, 8, 3), np.uint8), "UINT8"),
              typed("style_weights", np.ones((1, 5), np.float32), "FP32")], {}, "INVALID_ARGUMENT",
     "unexpected shape for input 'style_weights'"),
    ("unregistered shared memory", "add_sub", lambda: [_shm_input("nowhere"), good("INPUT1")], {},
     "NOT_FOUND", "Unable to find shared memory region: 'nowhere'"),
    ("malformed BYTES", "add_sub", lambda: [raw_input("INPUT0", "BYTES", [1, 16], b"\xff\xff\xff\x7f"), good("INPUT1")],
     {}, "INVALID_ARGUMENT", "malformed BYTES data for input 'INPUT0'"),
]


def _shm_input(region):
    t = grpcclient.InferInput("INPUT0", [1, 16], "FP32")
    t.set_shared_memory(region, 64)
    return t


@pytest.mark.parametrize("case", BAD, ids=[c[0] for c in BAD])
def test_bad_request_table(triton, case):
    _, model, make_inputs, kwargs, status, text = case
    with pytest.raises(InferenceServerException) as e:
        triton.infer(model, make_inputs(), **kwargs)
    assert e.value.status() == f"StatusCode.{status}", e.value.message()
    assert text in e.value.message()
    # the server still serves everyone else
    r = triton.infer("add_sub", [good("INPUT0"), good("INPUT1")])
    assert r.as_numpy("OUTPUT0").shape == (1, 16)


def test_oversize_message_is_rejected_and_server_survives(url, triton):
    # The fixture server allows 8 MiB messages; send 12 MiB with a client that allows it.
    big = np.zeros((1, 2048, 2048, 3), np.uint8)
    with grpcclient.InferenceServerClient(url, channel_args=[("grpc.max_send_message_length", 64 << 20)]) as c:
        with pytest.raises(InferenceServerException) as e:
            c.infer("identity", [typed("image", big, "UINT8")])
    assert e.value.status() == "StatusCode.RESOURCE_EXHAUSTED"
    assert triton.is_model_ready("add_sub")


def test_typed_contents_are_accepted(url):
    """Requests may carry typed ``contents`` instead of raw bytes (other KServe clients do)."""
    import grpc
    from tritonclient.grpc import service_pb2_grpc

    req = pb.ModelInferRequest(model_name="add_sub")
    for name in ("INPUT0", "INPUT1"):
        t = req.inputs.add(name=name, datatype="FP32", shape=[1, 16])
        t.contents.fp32_contents.extend([2.0] * 16)
    with grpc.insecure_channel(url) as ch:
        resp = service_pb2_grpc.GRPCInferenceServiceStub(ch).ModelInfer(req)
    out = np.frombuffer(resp.raw_output_contents[0], np.float32)
    np.testing.assert_array_equal(out, np.full(16, 4.0, np.float32))


def test_config_parse_error_names_file_and_line(tmp_path):
    from stylecast.server.config import ConfigError, read_config

    d = tmp_path / "m"
    d.mkdir()
    (d / "config.pbtxt").write_text('name: "m"\nmax_batch_size: 4\ninput [ { name: "x" data_tipe: TYPE_FP32 } ]\n')
    with pytest.raises(ConfigError) as e:
        read_config(d)
    assert str(d / "config.pbtxt") in e.value.message and "line 3" in e.value.message
