"""HTTP's codec: KServe v2 JSON (with Triton's binary-tensor and generate extensions) <-> the data plane's
:mod:`~stylecast.server.inference` types, and protocol messages as Triton's JSON.

Everything here runs off the event loop (see :mod:`.routes`) and checks what it takes before it builds
anything: names and strings must be valid UTF-8 (JSON can carry lone surrogates), integers must fit int64,
shapes must be regular with at most :data:`MAX_RANK` dims, and a JSON tensor may hold at most
``limits.max_json_elements`` elements (binary tensors are bounded by the body limit alone).
"""

from __future__ import annotations

import json
import re
import zlib
from dataclasses import dataclass

import numpy as np

from ..datatypes import datatype_of, numpy_dtype
from ..errors import InvalidArgument, ResourceExhausted, shorten
from ..inference import Request, Response, Tensor
from ..tensors import DATATYPES, MAX_RANK, check_int_range, element_count, tensor_bytes

HEADER_LENGTH = "Inference-Header-Content-Length"
INT64 = (-(2**63), 2**63 - 1)
_DIGITS = re.compile(r"[0-9]{1,18}")
MB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    """What one HTTP request may cost. JSON is bounded apart from binary data: parsing a JSON tensor costs
    about 10x its size in memory and a second per ~10 MB of CPU, binary data costs its size."""

    max_body: int = 64 * MB  # a body (binary tensors included), after decompression
    max_json: int = 16 * MB  # the JSON part of a body, after decompression
    max_json_elements: int = 4 * MB  # elements of all JSON tensors of one request
    body_timeout: float = 15.0  # seconds a client may pause while sending its body


def digits(value: str, what: str) -> int:
    """A decimal header value: ASCII digits only (``str.isdigit`` also takes '²'), at most 18 of them."""
    if not _DIGITS.fullmatch(value):
        raise InvalidArgument(f"{what} must be a decimal byte count, got {shorten(value)!r}")
    return int(value)


def inflate(data: bytes, encoding: str, limit: int, which: str = "body limit (--max-message-mb)") -> bytes:
    """Undo gzip/deflate, stopping as soon as the output passes ``limit`` (a 1 KB body can inflate to 1 GB)."""
    if encoding not in ("gzip", "deflate"):
        return data
    d = zlib.decompressobj(wbits=31 if encoding == "gzip" else 15)
    try:
        out = d.decompress(data, limit + 1)
    except zlib.error as e:
        raise InvalidArgument(f"malformed {encoding} request body: {e}") from e
    if len(out) > limit or d.unconsumed_tail:
        raise ResourceExhausted(f"the decompressed request body exceeds the server's {which} of {limit} bytes")
    return out


def split_body(data: bytes, header_length: str | None, limits: Limits) -> tuple[dict, bytes]:
    """The JSON header (parsed) and the binary tensors that follow it."""
    if header_length is None:
        head, binary = data, b""
    else:
        n = digits(header_length, HEADER_LENGTH)
        if n > len(data):
            raise InvalidArgument(f"{HEADER_LENGTH} {n} does not fit the {len(data)}-byte body")
        head, binary = data[:n], data[n:]
    if len(head) > limits.max_json:
        raise ResourceExhausted(
            f"the JSON part of the request is {len(head)} bytes, more than the server's JSON limit of "
            f"{limits.max_json} bytes (--max-json-mb): send large tensors as binary data "
            f"(Triton's binary tensor extension, {HEADER_LENGTH})")
    try:
        return (json.loads(head) if head.strip() else {}), binary
    except (ValueError, RecursionError) as e:
        raise InvalidArgument(f"malformed JSON in the request body: {e}") from e


# --- checked values -----------------------------------------------------------------------------------


def text(value, what: str) -> str:
    """A string from JSON that can go on the wire: lone surrogates (``"\\ud800"``) are refused."""
    if not isinstance(value, str):
        raise InvalidArgument(f"{what} must be a string, got {type(value).__name__}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise InvalidArgument(f"{what} is not valid Unicode (a lone surrogate at position {e.start}): "
                              "send UTF-8 text") from e
    return value


def flag(value, what: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidArgument(f"{what} must be true or false, got {shorten(repr(value))}")
    return value


def _params(obj, where: str) -> dict:
    if obj is None:
        return {}
    if not isinstance(obj, dict):
        raise InvalidArgument(f"'parameters' of {where} must be a JSON object")
    return obj


def checked_params(params: dict, skip: tuple[str, ...] = ()) -> dict:
    """Parameters that can go on the wire (names and strings UTF-8, integers within int64), less ``skip``."""
    checked = {}
    for k, v in params.items():
        text(k, "a parameter name")
        if k in skip:
            continue
        if isinstance(v, str):
            text(v, f"parameter '{shorten(k)}'")
        elif isinstance(v, int) and not isinstance(v, bool) and not INT64[0] <= v <= INT64[1]:
            raise InvalidArgument(f"parameter '{shorten(k)}' = {shorten(str(v))} does not fit a 64-bit integer")
        elif not isinstance(v, (bool, int, float)):
            raise InvalidArgument(f"parameter '{shorten(k)}' must be a boolean, number or string")
        checked[k] = v
    return checked


def check_shape(name: str, shape) -> list[int]:
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape):
        raise InvalidArgument(f"input '{shorten(name)}' needs a 'shape' of integers")
    if any(not 0 <= d <= INT64[1] for d in shape):  # the rank is tensors.element_count's to check
        raise InvalidArgument(f"invalid shape for input '{shorten(name)}': dimensions must be between 0 and 2^63-1")
    return shape


def nested_shape(value, name: str) -> list[int]:
    """The shape of a nested JSON list, refusing ragged ones ([[1, 2], [3]])."""
    shape: list[int] = []
    level = [value]
    while level and isinstance(level[0], list):
        n = len(level[0])
        if any(not isinstance(v, list) or len(v) != n for v in level):
            raise InvalidArgument(f"input '{shorten(name)}' is a ragged list: every row of a level must have "
                                  "the same length")
        shape.append(n)
        if len(shape) > MAX_RANK:
            raise InvalidArgument(f"input '{shorten(name)}' nests deeper than {MAX_RANK} levels")
        level = [x for v in level for x in v]
    if any(isinstance(v, list) for v in level):
        raise InvalidArgument(f"input '{shorten(name)}' is a ragged list: lists and values mixed on one level")
    return shape or [1]


def _flatten(data, limit: int) -> list:
    if not isinstance(data, list):
        return [data]
    flat: list = []
    stack = [iter(data)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            flat.append(item)
            if len(flat) > limit:
                return flat
        else:
            stack.pop()
    return flat


# --- tensors ------------------------------------------------------------------------------------------


def json_tensor(name: str, datatype: str, shape: list[int], data, budget: list[int] | None = None) -> np.ndarray:
    """JSON ``data`` (flat or nested, row-major) of one input as an array, checked against shape and datatype.
    ``budget`` (a one-item list) is the number of JSON elements the request may still use."""
    count = element_count(name, shape)
    if budget is not None:
        if count > budget[0]:
            raise ResourceExhausted(
                f"input '{shorten(name)}' holds {count} JSON elements, more than the {budget[0]} this request may "
                "still use (--max-json-elements): send large tensors as binary data")
        budget[0] -= count
    flat = _flatten(data, count)
    if len(flat) != count:
        raise InvalidArgument(f"unexpected number of elements {len(flat)} for inference input '{shorten(name)}', "
                              f"expecting {count}")
    if datatype == "BYTES":
        return np.array([text(v, f"an element of input '{shorten(name)}'").encode() for v in flat],
                        dtype=np.object_).reshape(shape)
    dtype = numpy_dtype(datatype)
    if datatype == "BOOL":
        if not all(isinstance(v, bool) for v in flat):
            raise InvalidArgument(f"input '{shorten(name)}': BOOL data must be true or false")
        return np.array(flat, dtype=bool).reshape(shape)
    if any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in flat):
        raise InvalidArgument(f"input '{shorten(name)}': {datatype} data must be numbers")
    if dtype.kind in "iu":
        if any(isinstance(v, float) for v in flat):
            raise InvalidArgument(f"input '{shorten(name)}': {datatype} data must be integers")
        check_int_range(name, datatype, flat)
    return np.array(flat, dtype=np.float64 if dtype.kind == "f" else object).astype(dtype).reshape(shape)


def parse_infer(model: str, version: str, header, binary: bytes,
                limits: Limits = Limits()) -> tuple[Request, dict]:
    """A KServe v2 JSON request (with Triton's binary extension) as a Request; also returns, per output name,
    whether it goes back as binary data (``"default"``: the request's default)."""
    if not isinstance(header, dict):
        raise InvalidArgument("the request body must be a JSON object")
    params = _params(header.get("parameters"), "the request")
    req = Request(model, version, text(str(header["id"]), "'id'") if "id" in header else "",
                  parameters=checked_params(params, skip=("binary_data_output",)))
    inputs = header.get("inputs")
    if not isinstance(inputs, list):
        raise InvalidArgument("the request must list its 'inputs'")
    offset, budget = 0, [limits.max_json_elements]
    for t in inputs:
        if not isinstance(t, dict) or "name" not in t:
            raise InvalidArgument("every input needs a 'name'")
        name = text(t["name"], "an input's 'name'")
        datatype = t.get("datatype")
        if not isinstance(datatype, str) or datatype not in DATATYPES:
            raise InvalidArgument(f"invalid datatype {shorten(repr(datatype))} for input '{shorten(name)}': "
                                  f"one of {', '.join(sorted(DATATYPES))}")
        shape = check_shape(name, t.get("shape"))
        tp = _params(t.get("parameters"), f"input '{shorten(name)}'")
        tensor = Tensor(name, datatype, shape, parameters=checked_params(tp, skip=("binary_data_size",)))
        req.inputs.append(tensor)
        if "shared_memory_region" in tp:
            continue
        if "binary_data_size" in tp:
            size = tp["binary_data_size"]
            if isinstance(size, bool) or not isinstance(size, int) or size < 0 or offset + size > len(binary):
                raise InvalidArgument(f"input '{shorten(name)}': binary_data_size {shorten(repr(size))} exceeds "
                                      f"the binary data sent ({len(binary) - offset} bytes left)")
            tensor.data = binary[offset:offset + size]
            offset += size
        elif "data" in t:
            tensor.data = json_tensor(name, datatype, shape, t["data"], budget)
        else:
            raise InvalidArgument(f"input '{shorten(name)}' has no data: give 'data', binary_data_size or "
                                  "shared memory")
    if offset != len(binary):
        raise InvalidArgument(f"{len(binary) - offset} bytes of binary data follow the JSON that no input claims")
    default_binary = flag(params.get("binary_data_output", False), "'binary_data_output'")
    wants: dict[str, bool] = {}
    for o in header.get("outputs") or []:
        if not isinstance(o, dict) or "name" not in o:
            raise InvalidArgument("every requested output needs a 'name'")
        name = text(o["name"], "an output's 'name'")
        op = _params(o.get("parameters"), f"output '{shorten(name)}'")
        req.outputs.append(Tensor(name, parameters=checked_params(op, skip=("binary_data",))))
        wants[name] = flag(op.get("binary_data", default_binary), f"'binary_data' of output '{shorten(name)}'")
    return req, {"default": default_binary, **wants}


def json_values(t: Tensor) -> list:
    """An output's array as a flat JSON list (BYTES as strings)."""
    flat = t.data.reshape(-1)
    if t.datatype == "BYTES":
        return [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in flat]
    return flat.tolist()


def response_body(resp: Response, binary_for: dict) -> tuple[bytes, int | None]:
    """A Response as JSON plus binary blobs; returns (body, JSON header length or None)."""
    outputs, blobs = [], []
    for o in resp.outputs:
        entry = {"name": o.name, "datatype": o.datatype, "shape": list(o.shape)}
        params = dict(o.parameters)
        if o.data is not None:
            if binary_for.get(o.name, binary_for.get("default", False)):
                data = tensor_bytes(o.data, o.datatype)
                params["binary_data_size"] = len(data)
                blobs.append(data)
            else:
                entry["data"] = json_values(o)
        if params:
            entry["parameters"] = params
        outputs.append(entry)
    head = {"model_name": resp.model, "model_version": resp.version, "outputs": outputs}
    if resp.id:
        head["id"] = resp.id
    if resp.parameters:
        head["parameters"] = dict(resp.parameters)
    body = json.dumps(head, separators=(",", ":")).encode()
    return (body + b"".join(blobs), len(body)) if blobs else (body, None)


# --- Triton's generate extension ----------------------------------------------------------------------


def generate_request(config, model: str, version: str, header, limits: Limits = Limits()) -> Request:
    """Flat generate JSON (``{"input": value, ..., "parameters": {...}}``) as a Request: each value's nesting
    gives its shape, the model's ``config`` its datatype."""
    if not isinstance(header, dict):
        raise InvalidArgument("the request body must be a JSON object")
    types = {t.name: t for t in config.input}
    req = Request(model, version, parameters=checked_params(_params(header.get("parameters"), "the request")))
    budget = [limits.max_json_elements]
    for name, value in header.items():
        text(name, "a generate key")
        if name in ("parameters", "id"):
            continue
        if name not in types:
            raise InvalidArgument(f"unexpected inference input '{shorten(name)}' for model '{shorten(model)}': "
                                  f"its inputs are {', '.join(sorted(types))}")
        shape = nested_shape(value, name)
        datatype = datatype_of(types[name].data_type)
        req.inputs.append(Tensor(name, datatype, shape, json_tensor(name, datatype, shape, value, budget)))
    return req


def generate_json(resp: Response) -> dict:
    out: dict = {"model_name": resp.model, "model_version": resp.version}
    for o in resp.outputs:
        values = json_values(o)
        out[o.name] = values[0] if len(values) == 1 and len(o.shape) <= 1 else \
            np.array(values, dtype=object).reshape(list(o.shape)).tolist()
    if resp.parameters:
        out["parameters"] = dict(resp.parameters)
    return out


# --- protocol messages as JSON ------------------------------------------------------------------------


def message_json(msg) -> dict:
    """A protocol message as Triton's HTTP JSON: field names as in the proto, integers as numbers."""
    out: dict = {}
    for field, value in msg.ListFields():
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            out[field.name] = {k: _value_json(field.message_type.fields_by_name["value"], v) for k, v in value.items()}
        elif _repeated(field):
            out[field.name] = [_value_json(field, v) for v in value]
        else:
            out[field.name] = _value_json(field, value)
    return out


def _repeated(field) -> bool:
    """protobuf 6 has ``is_repeated`` and deprecates ``label``; older releases have ``label`` only."""
    is_repeated = getattr(field, "is_repeated", None)
    return is_repeated if isinstance(is_repeated, bool) else field.label == field.LABEL_REPEATED


def _value_json(field, value):
    if field.message_type is not None:
        return message_json(value)
    if field.enum_type is not None:
        return field.enum_type.values_by_number[value].name
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value
