"""An attacker's and a careless client's requests: each is refused with a status that is not INTERNAL and a
message that says what to fix, nothing outside /dev/shm is touched, abandoned work stops, and the server
keeps serving everyone else."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from stylecast.client import Client, StylecastError
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc
from tritonclient.utils import InferenceServerException

from tests.models import SIDECAR_MESSAGE_MB


def stub(url: str):
    return service_pb2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(url))


def call(url: str, method: str, request, timeout: float = 30.0):
    """Send one raw protocol message; return (status code name, message)."""
    try:
        getattr(stub(url), method)(request, timeout=timeout)
        return "OK", ""
    except grpc.RpcError as e:
        return e.code().name, e.details()


def add_sub_ok(triton) -> None:
    x = np.arange(16, dtype=np.float32)[None]
    ins = [grpcclient.InferInput(n, [1, 16], "FP32") for n in ("INPUT0", "INPUT1")]
    for t in ins:
        t.set_data_from_numpy(x)
    np.testing.assert_array_equal(triton.infer("add_sub", ins).as_numpy("OUTPUT0"), 2 * x)


# --- shared memory ---------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["../../etc/passwd", "/../../tmp/x", "a/b", "/a/b", "..", "/..", ".", "", "/",
                                 "x" * 300, "/dev/shm/../etc/passwd"])
def test_shared_memory_keys_must_be_posix_names(url, triton, key):
    code, msg = call(url, "SystemSharedMemoryRegister",
                     pb.SystemSharedMemoryRegisterRequest(name="evil", key=key, offset=0, byte_size=4))
    assert code == "INVALID_ARGUMENT" and "invalid shared memory key" in msg, (code, msg)
    assert "evil" not in triton.get_system_shared_memory_status(as_json=True).get("regions", {})
    add_sub_ok(triton)


def test_symlinks_and_non_files_in_dev_shm_are_refused_alike(url, tmp_path):
    """A link in /dev/shm to a file elsewhere, a directory, and a missing name all read the same."""
    target = tmp_path / "secret"
    target.write_bytes(b"s" * 64)
    tag = uuid.uuid4().hex[:8]
    link, folder = Path(f"/dev/shm/sc_link_{tag}"), Path(f"/dev/shm/sc_dir_{tag}")
    link.symlink_to(target)
    folder.mkdir()
    try:
        answers = {}
        for key in (f"/{link.name}", f"/{folder.name}", f"/sc_missing_{tag}"):
            code, msg = call(url, "SystemSharedMemoryRegister",
                             pb.SystemSharedMemoryRegisterRequest(name="r", key=key, offset=0, byte_size=4))
            answers[key] = (code, msg.replace(key, "KEY"))
        assert len(set(answers.values())) == 1, answers  # nothing tells a link or a folder from a missing name
        code, msg = next(iter(answers.values()))
        assert code == "INVALID_ARGUMENT" and "Unable to open shared memory region" in msg
        assert str(target) not in msg and "secret" not in msg
        assert target.read_bytes() == b"s" * 64
    finally:
        link.unlink()
        folder.rmdir()


def _shm_request(size, offset=None, region="hard_in"):
    req = pb.ModelInferRequest(model_name="add_sub")
    for name in ("INPUT0", "INPUT1"):
        t = req.inputs.add(name=name, datatype="FP32", shape=[1, 16])
        t.parameters["shared_memory_region"].string_param = region
        if isinstance(size, str):
            t.parameters["shared_memory_byte_size"].string_param = size
        else:
            t.parameters["shared_memory_byte_size"].int64_param = size
        if offset is not None:
            t.parameters["shared_memory_offset"].int64_param = offset
    return req


@pytest.mark.parametrize("size,offset,text", [
    (-5, None, "must be a non-negative integer"),
    ("64", None, "must be a non-negative integer"),
    (64, -8, "must be a non-negative integer"),
    (1 << 62, None, "Invalid offset + byte size"),
])
def test_shared_memory_tensor_parameters_are_checked(url, triton, size, offset, text):
    import tritonclient.utils.shared_memory as shm

    key = f"/sc_hard_{uuid.uuid4().hex[:8]}"
    handle = shm.create_shared_memory_region("hard_in", key, 64)
    try:
        triton.register_system_shared_memory("hard_in", key, 64)
        code, msg = call(url, "ModelInfer", _shm_request(size, offset))
        assert code == "INVALID_ARGUMENT" and text in msg, (code, msg)
        add_sub_ok(triton)
    finally:
        triton.unregister_system_shared_memory("hard_in")
        shm.destroy_shared_memory_region(handle)


@pytest.mark.parametrize("offset,byte_size", [(0, 0), (0, 65), (60, 8), (2**63, 8), (0, 2**64 - 5)])
def test_register_checks_bounds_against_the_object(url, offset, byte_size):
    import tritonclient.utils.shared_memory as shm

    key = f"/sc_bounds_{uuid.uuid4().hex[:8]}"
    handle = shm.create_shared_memory_region("b", key, 64)
    try:
        code, msg = call(url, "SystemSharedMemoryRegister",
                         pb.SystemSharedMemoryRegisterRequest(name="b", key=key, offset=offset, byte_size=byte_size))
        assert code == "INVALID_ARGUMENT" and "failed to register shared memory region 'b'" in msg, (code, msg)
    finally:
        shm.destroy_shared_memory_region(handle)


# --- malformed sizes and values --------------------------------------------------------------------


def _image_request(shape, raw: bytes | None = None, contents=None):
    req = pb.ModelInferRequest(model_name="tiny_style")
    t = req.inputs.add(name="image", datatype="UINT8", shape=shape)
    if contents is not None:
        t.contents.uint_contents.extend(contents)
    else:
        req.raw_input_contents.append(raw or b"")
    w = req.inputs.add(name="style_weights", datatype="FP32", shape=[1, 3])
    w.contents.fp32_contents.extend([1.0, 0.0, 0.0])
    return req


@pytest.mark.parametrize("name,request_,text", [
    ("dims of 2^32 with no data", _image_request([1, 2**32, 2**32, 3]), "input byte size mismatch"),
    ("element count overflows int64", _image_request([1, 2**62 + 1, 4, 3], b"\0" * 12), "input byte size mismatch"),
    ("negative dim", _image_request([1, -4, 4, 3], b"\0" * 48), "dimensions must be non-negative"),
    ("zero elements beside dims no array can take", _image_request([0, 2**40, 2**40, 3]), "multiply past"),
    ("uint_contents 300 for UINT8", _image_request([1, 1, 1, 3], contents=[300, 0, 0]), "outside UINT8's range"),
])
def test_malformed_sizes_and_values_are_client_errors(url, triton, name, request_, text):
    # Each of these escaped as INTERNAL with a traceback before.
    code, msg = call(url, "ModelInfer", request_)
    assert code == "INVALID_ARGUMENT" and text in msg, (name, code, msg)
    add_sub_ok(triton)


@pytest.mark.parametrize("weights", [[np.nan, 0, 1], [np.inf, 0, 0], [1e30, 0, 0], [-1, 2, 0], [0, 0, 0]])
def test_style_weights_outside_the_contract_are_refused(url, weights):
    img = grpcclient.InferInput("image", [1, 8, 8, 3], "UINT8")
    img.set_data_from_numpy(np.zeros((1, 8, 8, 3), np.uint8))
    w = grpcclient.InferInput("style_weights", [1, 3], "FP32")
    w.set_data_from_numpy(np.array([weights], np.float32))
    with grpcclient.InferenceServerClient(url) as c:
        with pytest.raises(InferenceServerException) as e:
            c.infer("tiny_style", [img, w])
    assert e.value.status() == "StatusCode.INVALID_ARGUMENT" and "'style_weights'" in e.value.message()


@pytest.mark.parametrize("style", [[np.nan, 0, 1], [np.inf, 1, 1], [-1, 1, 1]])
def test_client_refuses_non_finite_weights_before_sending(url, style):
    from stylecast.client.core import style_vector

    with pytest.raises(StylecastError) as e:
        style_vector(style, ["red", "green", "blue"])
    assert e.value.status.name == "INVALID_ARGUMENT" and "finite" in e.value.message


# --- techniques: bounds, sizes, deadlines and cancels ------------------------------------------------


def test_occlusion_budget_is_checked_before_work(sidecar_url, cat_on_grey):
    with Client(sidecar_url) as c:
        t0 = time.monotonic()
        with pytest.raises(StylecastError) as e:
            c.explain("occlusion", cat_on_grey[:1, :1], patch=4, stride=2)
        assert e.value.status.name == "INVALID_ARGUMENT" and "raise 'stride'" in e.value.message
        assert time.monotonic() - t0 < 5


def test_answers_larger_than_the_message_limit_are_refused_before_work(sidecar_url):
    side = int((SIDECAR_MESSAGE_MB * 1024 * 1024 / 7) ** 0.5) + 64  # map (4 B) + overlay (3 B) per pixel
    big = np.random.default_rng(0).integers(0, 255, (side, side, 3), dtype=np.uint8)
    with Client(sidecar_url) as c:
        with pytest.raises(StylecastError) as e:
            c.explain("saliency", big)
    assert e.value.status.name == "INVALID_ARGUMENT" and "message limit" in e.value.message


def _technique_request(model: str, image: np.ndarray, **params) -> pb.ModelInferRequest:
    req = pb.ModelInferRequest(model_name=model)
    req.inputs.add(name="image", datatype="UINT8", shape=list(image.shape))
    req.raw_input_contents.append(image.tobytes())
    for k, v in params.items():
        req.parameters[k].int64_param = v
    return req


def test_a_passed_deadline_stops_occlusion(sidecar_url, cat_on_grey):
    """patch 8 / stride 8 is 784 forward passes (tens of seconds); the caller gives up after 1 s."""
    code, _ = call(sidecar_url, "ModelInfer", _technique_request("occlusion", cat_on_grey, patch=8, stride=8),
                   timeout=1.0)
    assert code == "DEADLINE_EXCEEDED"
    # occlusion has one worker: it is free again within a second or two, not after the 784 passes
    t0 = time.monotonic()
    code, msg = call(sidecar_url, "ModelInfer", _technique_request("occlusion", cat_on_grey, patch=112, stride=112),
                     timeout=30)
    assert code == "OK", msg
    assert time.monotonic() - t0 < 8


def test_a_cancelled_unary_call_frees_the_optimization_slot(sidecar_url, cat_on_grey):
    """A cancelled ModelInfer on an iterative technique used to run on and hold the only slot."""
    future = stub(sidecar_url).ModelInfer.future(_technique_request("deepdream", cat_on_grey, steps=1000))
    time.sleep(2.0)
    future.cancel()
    t0 = time.monotonic()
    with Client(sidecar_url) as c:
        out = c.optimize("class_visualization", {"class_index": np.array([130], np.int32)}, steps=2, size=32)
    assert out["steps"][0] == 2
    assert time.monotonic() - t0 < 10, "the cancelled deepdream kept the optimization slot"


# --- the repository --------------------------------------------------------------------------------


def test_poll_mode_reports_a_failed_reload_in_the_index(tmp_path, caplog):
    from stylecast.server.repository import ControlMode, ModelRepository

    from tests.models import add_sub

    add_sub(tmp_path / "m" / "1" / "model.onnx")
    repo = ModelRepository(tmp_path, ControlMode.POLL)
    try:
        repo.start()
        (tmp_path / "m" / "1" / "model.onnx").write_bytes(b"not an onnx file")
        repo.poll_once()
        (name, version, state, reason), = repo.index()
        assert (name, version, state) == ("m", "1", "READY")  # the old version keeps serving
        assert "failed to load" in reason and "still serving" in reason
        assert repo.get("m").version == 1
        caplog.clear()
        repo.poll_once()  # unchanged broken files are not retried (and not logged) every poll
        assert not [r for r in caplog.records if "failed to load" in r.getMessage()]
        add_sub(tmp_path / "m" / "1" / "model.onnx")
        os.utime(tmp_path / "m" / "1" / "model.onnx", ns=(time.time_ns(), time.time_ns() + 10**9))
        repo.poll_once()
        assert repo.index()[0][3] == ""  # fixed files load, and the reason clears
    finally:
        repo.close()


def test_hooks_act_on_their_own_call_only_when_techniques_run_concurrently(cat_on_grey):
    """The classifier is shared: guided backprop's ReLU hooks and Grad-CAM's forward hook must not touch a
    saliency or Grad-CAM call running on another thread (a soak once got INTERNAL from Grad-CAM)."""
    import threading

    import torch
    from stylecast.server.sidecar.attribution.methods import GradCAM, GuidedBackprop, Saliency
    from stylecast.server.sidecar.networks import load_classifier
    from torch.nn import functional as F

    model = load_classifier()
    x = F.interpolate(torch.from_numpy(cat_on_grey.copy()).permute(2, 0, 1)[None].float(), size=(224, 224),
                      mode="bilinear", antialias=True)
    t = torch.tensor([int(model(x).argmax())])
    alone = {"saliency": Saliency(model).attribute(x, t), "gradcam": GradCAM(model).attribute(x, t)}
    errors, seen = [], {"saliency": [], "gradcam": []}

    def loop(fn) -> None:
        try:
            for _ in range(4):
                fn()
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=loop, args=(lambda: GuidedBackprop(model).attribute(x, t),)),
               threading.Thread(target=loop, args=(lambda: seen["saliency"].append(Saliency(model).attribute(x, t)),)),
               threading.Thread(target=loop, args=(lambda: seen["gradcam"].append(GradCAM(model).attribute(x, t)),))]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors, errors
    for name, maps in seen.items():
        assert len(maps) == 4 and all(torch.allclose(m, alone[name], atol=1e-5) for m in maps), name
