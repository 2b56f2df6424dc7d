"""Small real ONNX models and repositories for tests (built with onnx.helper, run by ONNX Runtime)."""

from __future__ import annotations

from pathlib import Path

import onnx
from onnx import TensorProto, helper

OPSET = [helper.make_opsetid("", 17)]
SIDECAR_MESSAGE_MB = 16  # the sidecar test server's message limit (tests of answer sizes depend on it)


def _save(graph, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    model = helper.make_model(graph, opset_imports=OPSET)
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def add_sub(path: Path) -> None:
    """Triton's 'simple' example: OUTPUT0 = INPUT0 + INPUT1, OUTPUT1 = INPUT0 - INPUT1, FP32 [-1, 16]."""
    t = lambda n: helper.make_tensor_value_info(n, TensorProto.FLOAT, ["batch", 16])  # noqa: E731
    g = helper.make_graph(
        [helper.make_node("Add", ["INPUT0", "INPUT1"], ["OUTPUT0"]),
         helper.make_node("Sub", ["INPUT0", "INPUT1"], ["OUTPUT1"])],
        "add_sub", [t("INPUT0"), t("INPUT1")], [t("OUTPUT0"), t("OUTPUT1")])
    _save(g, path)


def identity_image(path: Path) -> None:
    """UINT8 [-1, -1, -1, 3] identity: an image model following the wire contract's dtypes."""
    i = helper.make_tensor_value_info("image", TensorProto.UINT8, ["batch", "h", "w", 3])
    o = helper.make_tensor_value_info("stylized", TensorProto.UINT8, ["batch", "h", "w", 3])
    _save(helper.make_graph([helper.make_node("Identity", ["image"], ["stylized"])], "identity", [i], [o]), path)


def slow_matmul(path: Path, n: int = 512, depth: int = 12) -> None:
    """FP32 [-1, n, n] -> tanh(X @ X ...) repeated: tens of milliseconds of real compute per row."""
    nodes, prev = [], "X"
    for k in range(depth):
        nodes += [helper.make_node("MatMul", [prev, "X"], [f"m{k}"]), helper.make_node("Tanh", [f"m{k}"], [f"t{k}"])]
        prev = f"t{k}"
    nodes.append(helper.make_node("Identity", [prev], ["Y"]))
    x = helper.make_tensor_value_info("X", TensorProto.FLOAT, ["batch", n, n])
    y = helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["batch", n, n])
    _save(helper.make_graph(nodes, "slow", [x], [y]), path)


ADD_SUB_CONFIG = """
name: "add_sub"
platform: "onnxruntime_onnx"
max_batch_size: 8
input [
  { name: "INPUT0" data_type: TYPE_FP32 dims: [ 16 ] },
  { name: "INPUT1" data_type: TYPE_FP32 dims: [ 16 ] }
]
output [
  { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 16 ] },
  { name: "OUTPUT1" data_type: TYPE_FP32 dims: [ 16 ] }
]
"""

BATCHED_CONFIG = """
name: "batched"
platform: "onnxruntime_onnx"
max_batch_size: 8
dynamic_batching { max_queue_delay_microseconds: 200000 preferred_batch_size: [ 8 ] }
"""

SLOW_CONFIG = """
name: "slow"
platform: "onnxruntime_onnx"
max_batch_size: 4
dynamic_batching { max_queue_delay_microseconds: 0 default_queue_policy { max_queue_size: 2 } }
"""


def build_repository(root: Path) -> Path:
    """A repository with working models, one auto-completed, one broken, and two versions of one."""
    add_sub(root / "add_sub" / "1" / "model.onnx")
    (root / "add_sub" / "config.pbtxt").write_text(ADD_SUB_CONFIG)
    add_sub(root / "batched" / "1" / "model.onnx")
    (root / "batched" / "config.pbtxt").write_text(BATCHED_CONFIG)
    identity_image(root / "identity" / "1" / "model.onnx")  # no config.pbtxt: auto-complete
    identity_image(root / "versioned" / "1" / "model.onnx")
    identity_image(root / "versioned" / "2" / "model.onnx")
    (root / "versioned" / "config.pbtxt").write_text(
        'name: "versioned"\nmax_batch_size: 2\nversion_policy { all { } }\n')
    slow_matmul(root / "slow" / "1" / "model.onnx")
    (root / "slow" / "config.pbtxt").write_text(SLOW_CONFIG)
    add_sub(root / "mismatch" / "1" / "model.onnx")
    (root / "mismatch" / "config.pbtxt").write_text(ADD_SUB_CONFIG.replace('"add_sub"', '"mismatch"').replace(
        "TYPE_FP32", "TYPE_INT32", 1))
    (root / "broken" / "1").mkdir(parents=True)
    (root / "broken" / "1" / "model.onnx").write_bytes(b"this is not an onnx file")
    (root / "broken" / "config.pbtxt").write_text('name: "broken"\nplatform: "onnxruntime_onnx"\n')
    return root


def add_sub_inputs(a, b) -> list:
    """tritonclient inputs INPUT0 = a, INPUT1 = b (FP32 arrays)."""
    import tritonclient.grpc as grpcclient

    ins = [grpcclient.InferInput(name, list(x.shape), "FP32") for name, x in (("INPUT0", a), ("INPUT1", b))]
    for t, x in zip(ins, (a, b), strict=True):
        t.set_data_from_numpy(x)
    return ins
