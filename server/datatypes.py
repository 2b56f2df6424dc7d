"""The one datatype table: the protocol's name (KServe v2 / Triton), the ModelConfig enum, ONNX Runtime's
and OpenVINO's type names, and the numpy dtype of each tensor datatype."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tritonclient.grpc import model_config_pb2 as mc


@dataclass(frozen=True)
class Datatype:
    name: str  # protocol: "FP32"
    config: str  # ModelConfig enum: "TYPE_FP32"
    ort: str  # ONNX Runtime: "tensor(float)"
    openvino: str  # OpenVINO element type: "f32"
    numpy: object  # numpy dtype (np.object_ for BYTES)
    contents: str | None  # the InferTensorContents field that carries it over gRPC (FP16, BF16: raw only)


def _bf16():
    try:
        import ml_dtypes

        return ml_dtypes.bfloat16
    except ImportError:  # a raw BF16 tensor is still 2 bytes an element
        return np.uint16


TABLE = (
    Datatype("BOOL", "TYPE_BOOL", "tensor(bool)", "boolean", np.bool_, "bool_contents"),
    Datatype("UINT8", "TYPE_UINT8", "tensor(uint8)", "u8", np.uint8, "uint_contents"),
    Datatype("UINT16", "TYPE_UINT16", "tensor(uint16)", "u16", np.uint16, "uint_contents"),
    Datatype("UINT32", "TYPE_UINT32", "tensor(uint32)", "u32", np.uint32, "uint_contents"),
    Datatype("UINT64", "TYPE_UINT64", "tensor(uint64)", "u64", np.uint64, "uint64_contents"),
    Datatype("INT8", "TYPE_INT8", "tensor(int8)", "i8", np.int8, "int_contents"),
    Datatype("INT16", "TYPE_INT16", "tensor(int16)", "i16", np.int16, "int_contents"),
    Datatype("INT32", "TYPE_INT32", "tensor(int32)", "i32", np.int32, "int_contents"),
    Datatype("INT64", "TYPE_INT64", "tensor(int64)", "i64", np.int64, "int64_contents"),
    Datatype("FP16", "TYPE_FP16", "tensor(float16)", "f16", np.float16, None),
    Datatype("FP32", "TYPE_FP32", "tensor(float)", "f32", np.float32, "fp32_contents"),
    Datatype("FP64", "TYPE_FP64", "tensor(double)", "f64", np.float64, "fp64_contents"),
    Datatype("BYTES", "TYPE_STRING", "tensor(string)", "string", np.object_, "bytes_contents"),
    Datatype("BF16", "TYPE_BF16", "tensor(bfloat16)", "bf16", _bf16(), None),
)
BY_NAME = {d.name: d for d in TABLE}
CONTENT_FIELD = {d.name: d.contents for d in TABLE if d.contents}
_BY_CONFIG = {d.config: d for d in TABLE}
_BY_ORT = {d.ort: d for d in TABLE}
_BY_OPENVINO = {d.openvino: d for d in TABLE}


def datatype_of(data_type: int) -> str:
    """ModelConfig enum value -> protocol name (TYPE_STRING -> BYTES)."""
    return _BY_CONFIG[mc.DataType.Name(data_type)].name


def type_of(datatype: str) -> int:
    """Protocol name -> ModelConfig enum value."""
    return mc.DataType.Value(BY_NAME[datatype].config)


def numpy_dtype(datatype: str) -> np.dtype:
    """Protocol name -> numpy dtype (np.object_ for BYTES)."""
    return np.dtype(BY_NAME[datatype].numpy)


def from_ort(type_name: str) -> str:
    """ONNX Runtime's "tensor(float)" -> "FP32" (an unknown name passes through, to be reported)."""
    d = _BY_ORT.get(type_name)
    return d.name if d else type_name


def from_openvino(type_name: str) -> str:
    """OpenVINO's "f32" -> "FP32" (an unknown name passes through, to be reported)."""
    d = _BY_OPENVINO.get(type_name)
    return d.name if d else type_name
