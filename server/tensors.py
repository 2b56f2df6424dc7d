"""A request's tensors as arrays, and the arrays of a result as a response, for every transport.

:func:`decode_request` checks the tensors of a :class:`~.inference.Request` (raw bytes against datatype and
shape, BYTES length prefixes, system shared memory regions named in tensor parameters) and makes the arrays
the models run on; :func:`encode_response` writes outputs into shared memory where asked.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field

import numpy as np
from tritonclient.utils import deserialize_bytes_tensor, serialize_byte_tensor

from .datatypes import BY_NAME, numpy_dtype
from .errors import InvalidArgument, shorten
from .inference import Request, Response, Tensor
from .shm import SharedMemoryManager

DATATYPES = set(BY_NAME)


@dataclass
class RequestedOutput:
    name: str
    shm: tuple[str, int, int] | None = None  # region, byte_size, offset


@dataclass
class InferRequest:
    """A decoded, transport-free inference request."""

    model: str
    version: str
    id: str
    inputs: dict[str, np.ndarray]
    outputs: list[RequestedOutput]
    parameters: dict = field(default_factory=dict)
    deadline: float | None = None  # time.monotonic() deadline, from the client's timeout
    cancelled: threading.Event | None = None  # set by the transport when the caller cancels or goes away
    decode_ns: int = 0  # time spent decoding the tensors (reported as part of compute_input)


@dataclass
class InferResult:
    outputs: dict[str, np.ndarray]
    model_version: str


def _int_param(params: dict, key: str, what: str, name: str, default: int | None = None) -> int:
    value = params.get(key, default)
    if value is None:
        raise InvalidArgument(f"'{key}' is missing for {what} '{name}'")
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidArgument(f"'{key}' for {what} '{name}' must be a non-negative integer, got {value!r}")
    return value


def _shm_ref(name: str, params: dict, what: str) -> tuple[str, int, int] | None:
    region = params.get("shared_memory_region")
    if region is None:
        return None
    if not isinstance(region, str) or not region:
        raise InvalidArgument(f"'shared_memory_region' for {what} '{name}' must be a region name, got {region!r}")
    size = _int_param(params, "shared_memory_byte_size", what, name)
    return region, size, _int_param(params, "shared_memory_offset", what, name, 0)


MAX_DIMS_PRODUCT = 2**62  # numpy cannot shape an array past this, even one with a zero dimension
MAX_RANK = 64  # numpy's most dimensions


def element_count(name: str, shape: list[int]) -> int:
    """Elements of ``shape``, in Python integers (no int64 overflow); negative dims, and dims whose product
    no array can have (even beside a zero), are refused."""
    if len(shape) > MAX_RANK:
        raise InvalidArgument(f"invalid shape for input '{shorten(name)}': {len(shape)} dimensions, more than "
                              f"{MAX_RANK}")
    if any(d < 0 for d in shape):
        raise InvalidArgument(f"invalid shape {shape} for input '{name}': dimensions must be non-negative")
    count = math.prod(shape)
    # A non-zero count that large can never match the bytes sent (the byte-size check says so); a zero count
    # with huge other dims would match empty data and then fail to take its shape.
    if count == 0 and math.prod(d for d in shape if d) > MAX_DIMS_PRODUCT:
        raise InvalidArgument(f"invalid shape {shape} for input '{name}': the dimensions multiply past "
                              f"{MAX_DIMS_PRODUCT}")
    return count


def _array(name: str, datatype: str, shape: list[int], data: bytes) -> np.ndarray:
    if datatype not in DATATYPES:
        raise InvalidArgument(f"invalid datatype '{datatype}' for input '{name}'")
    count = element_count(name, shape)
    if datatype == "BYTES":
        try:
            arr = deserialize_bytes_tensor(data)
        except Exception as e:  # malformed length prefixes
            raise InvalidArgument(f"malformed BYTES data for input '{name}': {e}") from e
        if arr.size != count:
            raise InvalidArgument(
                f"unexpected number of string elements {arr.size} for inference input '{name}', expecting {count}")
        return arr.reshape(shape)
    dtype = numpy_dtype(datatype)
    expected = count * dtype.itemsize
    if len(data) != expected:
        raise InvalidArgument(
            f"input byte size mismatch for input '{name}'. Expected {expected}, got {len(data)}")
    return np.frombuffer(data, dtype=dtype).reshape(shape)


def decode_request(req: Request, shm: SharedMemoryManager) -> InferRequest:
    """A Request's tensors as arrays. Raises InvalidArgument with Triton's texts."""
    inputs: dict[str, np.ndarray] = {}
    for t in req.inputs:
        if t.name in inputs:
            raise InvalidArgument(f"input '{t.name}' is specified more than once")
        ref = _shm_ref(t.name, t.parameters, "input")
        if ref is not None:
            inputs[t.name] = _array(t.name, t.datatype, t.shape, shm.read(*ref))
        elif isinstance(t.data, np.ndarray):
            inputs[t.name] = t.data  # the codec checked it (typed contents, JSON)
        elif t.data is None:
            raise InvalidArgument(f"input '{t.name}' has no data: use raw_input_contents, contents or shared memory")
        else:
            inputs[t.name] = _array(t.name, t.datatype, t.shape, t.data)
    outputs = [RequestedOutput(o.name, _shm_ref(o.name, o.parameters, "output")) for o in req.outputs]
    for o in req.outputs:
        if "classification" in o.parameters:
            raise InvalidArgument(f"classification is not supported for output '{o.name}'")
    return InferRequest(req.model, req.version, req.id, inputs, outputs, dict(req.parameters))


def check_int_range(name: str, datatype: str, values) -> None:
    """Refuse integers that do not fit ``datatype`` (typed contents and JSON carry unbounded integers)."""
    dtype = numpy_dtype(datatype)
    if dtype.kind not in "iu" or not len(values):
        return
    info = np.iinfo(dtype)
    lo, hi = min(values), max(values)
    if lo < info.min or hi > info.max:
        raise InvalidArgument(f"input '{name}' holds values outside {datatype}'s range "
                              f"[{info.min}, {info.max}] (got {lo}..{hi})")


def np_to_datatype(arr: np.ndarray) -> str:
    from tritonclient.utils import np_to_triton_dtype

    return "BYTES" if arr.dtype == np.object_ or arr.dtype.kind in "SU" else np_to_triton_dtype(arr.dtype)


def bytes_tensor(arr: np.ndarray) -> bytes:
    """Length-prefixed elements, as Triton puts BYTES tensors on the wire."""
    if arr.size == 0:
        return b""
    packed = serialize_byte_tensor(arr)  # a 0-d object array holding the serialized bytes
    return packed.item() if packed.dtype == np.object_ else packed.tobytes()


def tensor_bytes(arr: np.ndarray, datatype: str) -> bytes:
    """An array as its wire bytes (BYTES length-prefixed)."""
    return bytes_tensor(arr) if datatype == "BYTES" else np.ascontiguousarray(arr).tobytes()


def encode_response(req: InferRequest, result: InferResult, shm: SharedMemoryManager,
                    parameters: dict | None = None) -> Response:
    """The result as a Response: the requested outputs (a decoupled model's progress carries only some), those
    asked in shared memory written there."""
    wanted = [o for o in req.outputs if o.name in result.outputs] or [RequestedOutput(n) for n in result.outputs]
    outputs = []
    for o in wanted:
        arr = result.outputs[o.name]
        dt = np_to_datatype(arr)
        if o.shm is None:
            outputs.append(Tensor(o.name, dt, list(arr.shape), arr))
            continue
        region, size, offset = o.shm
        data = tensor_bytes(arr, dt)
        shm.write(region, offset, size, data, o.name)
        params = {"shared_memory_region": region, "shared_memory_byte_size": len(data)}
        if offset:
            params["shared_memory_offset"] = offset
        outputs.append(Tensor(o.name, dt, list(arr.shape), None, params))
    return Response(req.model, result.model_version, req.id, outputs, dict(parameters or {}))
