"""gRPC's codec: KServe v2 protobuf messages <-> the data plane's :mod:`.inference` types."""

from __future__ import annotations

import numpy as np
from tritonclient.grpc import service_pb2 as pb

from .datatypes import CONTENT_FIELD, numpy_dtype
from .errors import InvalidArgument
from .inference import Request, Response, Tensor
from .tensors import check_int_range, element_count, tensor_bytes


def param_value(p: pb.InferParameter):
    kind = p.WhichOneof("parameter_choice")
    return None if kind is None else getattr(p, kind)


def params_dict(params) -> dict:
    return {k: param_value(v) for k, v in params.items()}


def to_param(value) -> pb.InferParameter:
    if isinstance(value, bool):
        return pb.InferParameter(bool_param=value)
    if isinstance(value, int):
        return pb.InferParameter(int64_param=value)
    if isinstance(value, float):
        return pb.InferParameter(double_param=value)
    return pb.InferParameter(string_param=str(value))


def request(req: pb.ModelInferRequest) -> Request:
    """A ModelInferRequest as the data plane's Request: raw contents paired with the inputs that are not in
    shared memory, in order; typed contents checked and made arrays. Raises InvalidArgument."""
    raw = list(req.raw_input_contents)
    inputs, raw_i = [], 0
    for t in req.inputs:
        params = params_dict(t.parameters)
        data = None
        if "shared_memory_region" in params:
            pass
        elif raw:  # one that runs out leaves None: the data plane names it in its turn, after earlier inputs
            data = raw[raw_i] if raw_i < len(raw) else None
            raw_i += 1
        elif t.HasField("contents"):
            data = _from_contents(t, list(t.shape))
        inputs.append(Tensor(t.name, t.datatype, list(t.shape), data, params))
    if raw and raw_i < len(raw):
        raise InvalidArgument(f"expected {raw_i} raw input contents, got {len(raw)}")
    outputs = [Tensor(o.name, parameters=params_dict(o.parameters)) for o in req.outputs]
    return Request(req.model_name, req.model_version, req.id, inputs, outputs, params_dict(req.parameters))


def _from_contents(t: pb.ModelInferRequest.InferInputTensor, shape: list[int]) -> np.ndarray:
    if t.datatype not in CONTENT_FIELD:
        raise InvalidArgument(f"datatype '{t.datatype}' of input '{t.name}' cannot be sent in typed contents")
    values = getattr(t.contents, CONTENT_FIELD[t.datatype])
    count = element_count(t.name, shape)
    if len(values) != count:
        raise InvalidArgument(
            f"unexpected number of elements {len(values)} for inference input '{t.name}', expecting {count}")
    if t.datatype == "BYTES":
        return np.array(list(values), dtype=np.object_).reshape(shape)
    check_int_range(t.name, t.datatype, values)
    return np.array(list(values), dtype=numpy_dtype(t.datatype)).reshape(shape)


def response(resp: Response) -> pb.ModelInferResponse:
    """The data plane's Response as a ModelInferResponse: raw output contents (an empty one for an output in
    shared memory, when any output travels in the message)."""
    out = pb.ModelInferResponse(model_name=resp.model, model_version=resp.version, id=resp.id)
    for k, v in resp.parameters.items():
        out.parameters[k].CopyFrom(to_param(v))
    use_raw = any(o.data is not None for o in resp.outputs)
    for o in resp.outputs:
        t = out.outputs.add(name=o.name, datatype=o.datatype, shape=o.shape)
        for k, v in o.parameters.items():
            t.parameters[k].CopyFrom(to_param(v))
        if o.data is not None:
            out.raw_output_contents.append(tensor_bytes(o.data, o.datatype))
        elif use_raw:
            out.raw_output_contents.append(b"")
    return out

