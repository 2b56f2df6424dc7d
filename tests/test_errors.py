"""Bad requests get the right gRPC status and a message that says what to fix; the server keeps serving."""

from __future__ import annotations

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.grpc import service_pb2 as pb
from tritonclient.utils import InferenceServerException

from tests.bad_requests import BAD, good, typed


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
