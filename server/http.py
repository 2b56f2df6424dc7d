"""The thin HTTP/REST transport: KServe v2 as Triton serves it on port 8000, over the same data plane.

Routes: health, server and model metadata, model config, infer (JSON tensors and Triton's binary-tensor
extension), repository index / load / unload, statistics, and Triton's ``generate`` / ``generate_stream``
(server-sent events: a decoupled technique streams its progress). Errors map to HTTP status and Triton's
error JSON ``{"error": "..."}`` in one place (:func:`http_status`). Built on Starlette and uvicorn, as
KServe and MLServer are; static files of the web studio are served at ``/``.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import zlib
from pathlib import Path

import anyio
import numpy as np
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from tritonclient.grpc import service_pb2 as pb
from tritonclient.utils import deserialize_bytes_tensor

from .dataplane import DataPlane
from .datatypes import datatype_of, numpy_dtype
from .errors import InvalidArgument, ServerError, Status
from .tensors import DATATYPES, bytes_tensor, check_int_range, element_count, param_value, to_param

log = logging.getLogger(__name__)

HEADER_LENGTH = "Inference-Header-Content-Length"
STATIC = Path(__file__).resolve().parent / "web"
# Triton's HTTP codes for its error kinds (http_server.cc); everything unexpected is a 500.
_HTTP_STATUS = {
    Status.INVALID_ARGUMENT: 400, Status.NOT_FOUND: 404, Status.UNAVAILABLE: 503, Status.ALREADY_EXISTS: 409,
    Status.DEADLINE_EXCEEDED: 504, Status.CANCELLED: 499, Status.UNIMPLEMENTED: 501, Status.UNAUTHENTICATED: 401,
    Status.RESOURCE_EXHAUSTED: 413, Status.INTERNAL: 500,
}


def http_status(err: BaseException) -> tuple[int, str]:
    """The one mapping of errors to HTTP status and message (the gRPC one is errors.to_grpc)."""
    if isinstance(err, ServerError):
        return _HTTP_STATUS.get(err.status, 500), err.message
    return 500, f"internal error: {type(err).__name__}: {err}"


def error_response(err: BaseException) -> JSONResponse:
    code, message = http_status(err)
    if code == 500:
        log.error("HTTP request failed", exc_info=err)
    return JSONResponse({"error": message}, status_code=code)


# --- protocol messages <-> JSON --------------------------------------------------------------------


def message_json(msg) -> dict:
    """A protocol message as Triton's HTTP JSON: field names as in the proto, integers as numbers."""
    out: dict = {}
    for field, value in msg.ListFields():
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            out[field.name] = {k: _value_json(field.message_type.fields_by_name["value"], v) for k, v in value.items()}
        elif field.label == field.LABEL_REPEATED:
            out[field.name] = [_value_json(field, v) for v in value]
        else:
            out[field.name] = _value_json(field, value)
    return out


def _value_json(field, value):
    if field.message_type is not None:
        return message_json(value)
    if field.enum_type is not None:
        return field.enum_type.values_by_number[value].name
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def _params(obj: dict | None, where: str) -> dict:
    if obj is None:
        return {}
    if not isinstance(obj, dict):
        raise InvalidArgument(f"'parameters' of {where} must be a JSON object")
    return obj


def _set_params(target, params: dict, skip: tuple[str, ...] = ()) -> None:
    for k, v in params.items():
        if k in skip:
            continue
        if not isinstance(v, (bool, int, float, str)):
            raise InvalidArgument(f"parameter '{k}' must be a boolean, number or string")
        target[k].CopyFrom(to_param(v))


def _flatten(data, name: str) -> list:
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
        else:
            stack.pop()
    return flat


def json_tensor_bytes(name: str, datatype: str, shape: list[int], data) -> bytes:
    """JSON ``data`` (flat or nested, row-major) of one input as raw bytes, checked against shape and datatype."""
    flat = _flatten(data, name)
    count = element_count(name, shape)
    if len(flat) != count:
        raise InvalidArgument(f"unexpected number of elements {len(flat)} for inference input '{name}', "
                              f"expecting {count}")
    if datatype == "BYTES":
        if not all(isinstance(v, str) for v in flat):
            raise InvalidArgument(f"input '{name}': BYTES data in JSON must be strings")
        return bytes_tensor(np.array([v.encode() for v in flat], dtype=np.object_))
    dtype = numpy_dtype(datatype)
    if datatype == "BOOL":
        if not all(isinstance(v, bool) for v in flat):
            raise InvalidArgument(f"input '{name}': BOOL data must be true or false")
        return np.array(flat, dtype=bool).tobytes()
    if any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in flat):
        raise InvalidArgument(f"input '{name}': {datatype} data must be numbers")
    if dtype.kind in "iu":
        if any(isinstance(v, float) for v in flat):
            raise InvalidArgument(f"input '{name}': {datatype} data must be integers")
        check_int_range(name, datatype, flat)
    return np.array(flat, dtype=np.float64 if dtype.kind == "f" else object).astype(dtype).tobytes()


def parse_infer(model: str, version: str, header: dict, binary: bytes) -> tuple[pb.ModelInferRequest, dict]:
    """A KServe v2 JSON request (with Triton's binary extension) as a ModelInferRequest; also returns, per
    output name, whether it goes back as binary data (None: the request's default)."""
    if not isinstance(header, dict):
        raise InvalidArgument("the request body must be a JSON object")
    req = pb.ModelInferRequest(model_name=model, model_version=version, id=str(header.get("id", "")))
    params = _params(header.get("parameters"), "the request")
    _set_params(req.parameters, params, skip=("binary_data_output",))
    offset = 0
    inputs = header.get("inputs")
    if not isinstance(inputs, list):
        raise InvalidArgument("the request must list its 'inputs'")
    for t in inputs:
        if not isinstance(t, dict) or not isinstance(t.get("name"), str):
            raise InvalidArgument("every input needs a 'name'")
        name, datatype, shape = t["name"], t.get("datatype"), t.get("shape")
        if datatype not in DATATYPES:
            raise InvalidArgument(f"invalid datatype '{datatype}' for input '{name}'")
        if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape):
            raise InvalidArgument(f"input '{name}' needs a 'shape' of integers")
        tp = _params(t.get("parameters"), f"input '{name}'")
        tensor = req.inputs.add(name=name, datatype=datatype, shape=shape)
        _set_params(tensor.parameters, tp, skip=("binary_data_size",))
        if "shared_memory_region" in tp:
            continue
        if "binary_data_size" in tp:
            size = tp["binary_data_size"]
            if isinstance(size, bool) or not isinstance(size, int) or size < 0 or offset + size > len(binary):
                raise InvalidArgument(f"input '{name}': binary_data_size {size!r} exceeds the binary data sent "
                                      f"({len(binary) - offset} bytes left)")
            req.raw_input_contents.append(binary[offset:offset + size])
            offset += size
        elif "data" in t:
            req.raw_input_contents.append(json_tensor_bytes(name, datatype, shape, t["data"]))
        else:
            raise InvalidArgument(f"input '{name}' has no data: give 'data', binary_data_size or shared memory")
    if offset != len(binary):
        raise InvalidArgument(f"{len(binary) - offset} bytes of binary data follow the JSON that no input claims")
    default_binary = bool(params.get("binary_data_output", False))
    wants: dict[str, bool] = {}
    for o in header.get("outputs") or []:
        if not isinstance(o, dict) or not isinstance(o.get("name"), str):
            raise InvalidArgument("every requested output needs a 'name'")
        op = _params(o.get("parameters"), f"output '{o['name']}'")
        out = req.outputs.add(name=o["name"])
        _set_params(out.parameters, op, skip=("binary_data",))
        wants[o["name"]] = bool(op.get("binary_data", default_binary))
    return req, {"default": default_binary, **wants}


def response_body(resp: pb.ModelInferResponse, binary_for: dict) -> tuple[bytes, int | None]:
    """A ModelInferResponse as JSON plus binary blobs; returns (body, JSON header length or None)."""
    outputs, blobs = [], []
    raw = list(resp.raw_output_contents)
    for i, o in enumerate(resp.outputs):
        entry = {"name": o.name, "datatype": o.datatype, "shape": list(o.shape)}
        params = {k: param_value(v) for k, v in o.parameters.items()}
        data = raw[i] if i < len(raw) else b""
        if "shared_memory_region" not in params:
            if binary_for.get(o.name, binary_for.get("default", False)):
                params["binary_data_size"] = len(data)
                blobs.append(data)
            else:
                entry["data"] = tensor_values(o.datatype, list(o.shape), data)
        if params:
            entry["parameters"] = params
        outputs.append(entry)
    head = {"model_name": resp.model_name, "model_version": resp.model_version, "outputs": outputs}
    if resp.id:
        head["id"] = resp.id
    if resp.parameters:
        head["parameters"] = {k: param_value(v) for k, v in resp.parameters.items()}
    text = json.dumps(head, separators=(",", ":")).encode()
    return (text + b"".join(blobs), len(text)) if blobs else (text, None)


def tensor_values(datatype: str, shape: list[int], data: bytes) -> list:
    """Raw tensor bytes as a flat JSON list (BYTES as strings)."""
    if datatype == "BYTES":
        return [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
                for v in deserialize_bytes_tensor(data).reshape(-1)] if data else []
    return np.frombuffer(data, dtype=numpy_dtype(datatype)).reshape(-1).tolist()


# --- the application -------------------------------------------------------------------------------


class TokenMiddleware:
    """Requires ``Authorization: Bearer <token>`` except on the health routes (probes) and the static page."""

    def __init__(self, app, token: str | None) -> None:
        self.app, self.expected = app, (f"Bearer {token}".encode() if token else None)

    async def __call__(self, scope, receive, send) -> None:
        if self.expected is None or scope["type"] != "http" or not scope["path"].startswith("/v2") \
                or scope["path"].startswith("/v2/health/"):
            return await self.app(scope, receive, send)
        if dict(scope["headers"]).get(b"authorization") == self.expected:
            return await self.app(scope, receive, send)
        await JSONResponse({"error": "missing or invalid bearer token"}, status_code=401)(scope, receive, send)


class HttpApi:
    """Route handlers over one data plane."""

    def __init__(self, plane: DataPlane, max_body: int) -> None:
        self.plane, self.max_body = plane, max_body

    async def body(self, request: Request) -> bytes:
        """The request body, refused before reading past the size limit; gzip/deflate undone."""
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_body):
            raise ServerError(f"request body of {declared} bytes exceeds the limit of {self.max_body}",
                              Status.RESOURCE_EXHAUSTED)
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.max_body:
                raise ServerError(f"request body exceeds the limit of {self.max_body} bytes", Status.RESOURCE_EXHAUSTED)
            chunks.append(chunk)
        data = b"".join(chunks)
        encoding = request.headers.get("content-encoding", "").lower()
        if encoding in ("gzip", "deflate"):
            d = zlib.decompressobj(wbits=31 if encoding == "gzip" else 15)
            try:
                data = d.decompress(data, self.max_body + 1)
            except zlib.error as e:
                raise InvalidArgument(f"malformed {encoding} request body: {e}") from e
            if len(data) > self.max_body or d.unconsumed_tail:
                raise ServerError("decompressed request body exceeds the limit", Status.RESOURCE_EXHAUSTED)
        return data

    async def json_header(self, request: Request) -> tuple[dict, bytes]:
        data = await self.body(request)
        length = request.headers.get(HEADER_LENGTH)
        if length is not None:
            if not length.isdigit() or int(length) > len(data):
                raise InvalidArgument(f"{HEADER_LENGTH} {length!r} does not fit the {len(data)}-byte body")
            head, binary = data[:int(length)], data[int(length):]
        else:
            head, binary = data, b""
        try:
            return (json.loads(head) if head.strip() else {}), binary
        except (ValueError, RecursionError) as e:
            raise InvalidArgument(f"malformed JSON in the request body: {e}") from e

    # -- health and metadata --

    async def live(self, request: Request) -> Response:
        return Response(status_code=200 if self.plane.live() else 400)

    async def ready(self, request: Request) -> Response:
        return Response(status_code=200 if self.plane.ready() else 400)

    async def server_metadata(self, request: Request) -> Response:
        return JSONResponse(message_json(self.plane.server_metadata()))

    async def model_ready(self, request: Request) -> Response:
        p = request.path_params
        return Response(status_code=200 if self.plane.model_ready(p["model"], p.get("version", "")) else 400)

    async def model_metadata(self, request: Request) -> Response:
        p = request.path_params
        return JSONResponse(message_json(self.plane.model_metadata(p["model"], p.get("version", ""))))

    async def model_config(self, request: Request) -> Response:
        p = request.path_params
        return JSONResponse(message_json(self.plane.model_config(p["model"], p.get("version", ""))))

    async def statistics(self, request: Request) -> Response:
        p = request.path_params
        return JSONResponse(message_json(self.plane.statistics(p.get("model", ""), p.get("version", ""))))

    # -- repository --

    async def repository_index(self, request: Request) -> Response:
        header, _ = await self.json_header(request)
        ready = bool(header.get("ready", False)) if isinstance(header, dict) else False
        return JSONResponse([message_json(m) for m in self.plane.repository_index(ready).models])

    async def load(self, request: Request) -> Response:
        header, _ = await self.json_header(request)
        if isinstance(header, dict) and header.get("parameters"):
            raise InvalidArgument("load parameters (config or file overrides) are not supported")
        await anyio.to_thread.run_sync(self.plane.load, request.path_params["model"])
        return Response(status_code=200)

    async def unload(self, request: Request) -> Response:
        await anyio.to_thread.run_sync(self.plane.unload, request.path_params["model"])
        return Response(status_code=200)

    # -- inference --

    async def infer(self, request: Request) -> Response:
        p = request.path_params
        header, binary = await self.json_header(request)
        req, binary_for = parse_infer(p["model"], p.get("version", ""), header, binary)
        resp = await self._run(request, req)
        body, length = response_body(resp, binary_for)
        if length is None:
            return Response(body, media_type="application/json")
        return Response(body, media_type="application/octet-stream", headers={HEADER_LENGTH: str(length)})

    async def _run(self, request: Request, req: pb.ModelInferRequest) -> pb.ModelInferResponse:
        """Run one request on a worker thread; a client that disconnects cancels it."""
        cancelled = threading.Event()
        result: dict = {}

        def work() -> None:
            try:
                result["response"] = self.plane.infer(req, None, cancelled)
            except BaseException as e:  # noqa: BLE001 - re-raised on the event loop
                result["error"] = e

        async with anyio.create_task_group() as tg:
            async def watch() -> None:
                while not await request.is_disconnected():
                    await anyio.sleep(0.25)
                cancelled.set()

            tg.start_soon(watch)
            await anyio.to_thread.run_sync(work)
            tg.cancel_scope.cancel()
        if "error" in result:
            raise result["error"]
        return result["response"]

    async def generate(self, request: Request) -> Response:
        """Triton's generate extension: JSON keys are inputs, the last response comes back as flat JSON."""
        events = [e async for e in self._generate_events(request)]
        final = json.loads(events[-1])
        if "error" in final:
            raise InvalidArgument(final["error"])
        return JSONResponse(final)

    async def generate_stream(self, request: Request) -> Response:
        """Server-sent events: one ``data:`` line per response (progress first, the result last)."""
        source = self._generate_events(request)
        first = await source.__anext__()  # a bad request is answered with its HTTP status, not an event

        async def stream():
            yield f"data: {first}\n\n"
            async for event in source:
                yield f"data: {event}\n\n"

        return StreamingResponse(stream(), media_type="text/event-stream")

    async def _generate_events(self, request: Request):
        p = request.path_params
        header, _ = await self.json_header(request)
        req = generate_request(self.plane, p["model"], p.get("version", ""), header)
        responses: queue.Queue = queue.Queue()
        cancelled = threading.Event()
        done = object()

        def emit(resp: pb.ModelInferResponse) -> bool:
            responses.put(resp)
            return not cancelled.is_set()

        future = self.plane.infer_async(req, None, emit, cancelled)
        future.add_done_callback(lambda f: responses.put(done))
        try:
            while True:
                item = await anyio.to_thread.run_sync(responses.get)
                if item is done:
                    break
                yield json.dumps(generate_json(item))
            try:
                yield json.dumps(generate_json(future.result()))
            except ServerError as e:
                yield json.dumps({"error": e.message})
        finally:
            cancelled.set()


def generate_request(plane: DataPlane, model: str, version: str, header: dict) -> pb.ModelInferRequest:
    """Flat generate JSON (``{"input": value, ..., "parameters": {...}}``) as a ModelInferRequest: each
    value's nesting gives its shape, the model's config its datatype."""
    if not isinstance(header, dict):
        raise InvalidArgument("the request body must be a JSON object")
    cfg = plane.model_config(model, version)
    types = {t.name: t for t in cfg.input}
    req = pb.ModelInferRequest(model_name=model, model_version=version)
    _set_params(req.parameters, _params(header.get("parameters"), "the request"))

    for name, value in header.items():
        if name in ("parameters", "id"):
            continue
        if name not in types:
            raise InvalidArgument(f"unexpected inference input '{name}' for model '{model}'")
        shape = list(np.shape(value)) if isinstance(value, list) else [1]
        datatype = datatype_of(types[name].data_type)
        req.inputs.add(name=name, datatype=datatype, shape=shape)
        req.raw_input_contents.append(json_tensor_bytes(name, datatype, shape, value))
    return req


def generate_json(resp: pb.ModelInferResponse) -> dict:
    out: dict = {"model_name": resp.model_name, "model_version": resp.model_version}
    for i, o in enumerate(resp.outputs):
        values = tensor_values(o.datatype, list(o.shape), resp.raw_output_contents[i])
        out[o.name] = values[0] if len(values) == 1 and len(o.shape) <= 1 else \
            np.array(values, dtype=object).reshape(list(o.shape)).tolist()
    for k, v in resp.parameters.items():
        out.setdefault("parameters", {})[k] = param_value(v)
    return out


def _guard(handler):
    async def wrapped(request: Request) -> Response:
        try:
            return await handler(request)
        except Exception as e:  # noqa: BLE001 - every error is answered with Triton's JSON
            return error_response(e)
    return wrapped


def build_app(plane: DataPlane, max_body: int, token: str | None = None, static: Path | None = STATIC) -> Starlette:
    api = HttpApi(plane, max_body)
    model = "/v2/models/{model:str}"
    versioned = [model, model + "/versions/{version:str}"]
    routes = [
        Route("/v2/health/live", _guard(api.live)),
        Route("/v2/health/ready", _guard(api.ready)),
        Route("/v2", _guard(api.server_metadata)),
        Route("/v2/models/stats", _guard(api.statistics)),
        Route("/v2/repository/index", _guard(api.repository_index), methods=["POST"]),
        Route("/v2/repository/models/{model:str}/load", _guard(api.load), methods=["POST"]),
        Route("/v2/repository/models/{model:str}/unload", _guard(api.unload), methods=["POST"]),
    ]
    for base in versioned:
        routes += [
            Route(base, _guard(api.model_metadata)),
            Route(base + "/ready", _guard(api.model_ready)),
            Route(base + "/config", _guard(api.model_config)),
            Route(base + "/stats", _guard(api.statistics)),
            Route(base + "/infer", _guard(api.infer), methods=["POST"]),
            Route(base + "/generate", _guard(api.generate), methods=["POST"]),
            Route(base + "/generate_stream", _guard(api.generate_stream), methods=["POST"]),
        ]
    if static is not None and static.is_dir():
        routes.append(Mount("/", StaticFiles(directory=static, html=True)))
    return Starlette(routes=routes, middleware=[Middleware(TokenMiddleware, token=token)])


class HttpServer:
    """uvicorn on its own thread, bound before it starts (so port 0 picks a free port)."""

    def __init__(self, plane: DataPlane, host: str, port: int, max_body: int, token: str | None = None,
                 tls_cert: str | None = None, tls_key: str | None = None) -> None:
        import socket

        import uvicorn

        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, port))
        self.port = self._sock.getsockname()[1]
        config = uvicorn.Config(build_app(plane, max_body, token), log_level="warning", access_log=False,
                                ssl_certfile=tls_cert, ssl_keyfile=tls_key, timeout_graceful_shutdown=5)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]},
                                        name="http", daemon=True)
        self._thread.start()
        for _ in range(200):
            if self._server.started:
                break
            threading.Event().wait(0.025)
        log.info("HTTP/REST on %s:%d", host, self.port)

    def close(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._sock.close()
