"""KServe v2 routes as Triton serves them on port 8000, over the data plane.

Health, server and model metadata, model config, infer (JSON tensors and Triton's binary-tensor extension),
repository index / load / unload, statistics, system shared memory, and Triton's ``generate`` /
``generate_stream`` (server-sent events of the data plane's one stream pump). Errors become HTTP status and
Triton's error JSON ``{"error": "..."}`` through the one error table (:func:`errors.to_http`).

Nothing a request does blocks the event loop: the model is looked up before the body is read, decoding
(decompression, JSON, tensors) runs on a few worker threads (:attr:`HttpApi.decoding`), and waiting for an
answer holds no thread (the data plane's futures and outbox are awaited). A client that disconnects, or a
server that shuts down, cancels its work.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import anyio
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ..dataplane import DataPlane
from ..errors import InvalidArgument, ServerError, Status, Unavailable, to_http
from ..streams import END, Outbox
from .codec import (
    HEADER_LENGTH,
    Limits,
    digits,
    flag,
    generate_json,
    generate_request,
    inflate,
    message_json,
    parse_infer,
    response_body,
    split_body,
)
from .openapi import document, swagger_ui
from .security import Guard

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent.parent / "web"
DECODERS = 2  # requests decoded at once; the rest wait without holding the loop


def json_response(content, status: int = 200) -> Response:
    """JSON with every non-ASCII character escaped, so no string (a lone surrogate included) fails to encode."""
    return Response(json.dumps(content, separators=(",", ":")), status_code=status, media_type="application/json")


def error_response(err: BaseException) -> Response:
    code, message = to_http(err)
    return json_response({"error": message}, code)


class HttpApi:
    """Route handlers over one data plane."""

    def __init__(self, plane: DataPlane, limits: Limits) -> None:
        self.plane, self.limits = plane, limits
        self.decoding = anyio.CapacityLimiter(DECODERS)
        self.stopping = threading.Event()  # the server is shutting down: work in flight is cancelled

    # -- bodies --

    async def body(self, request: Request) -> bytes:
        """The raw request body, refused before reading past the size limit or when the client stalls."""
        declared = request.headers.get("content-length")
        if declared is not None and digits(declared, "Content-Length") > self.limits.max_body:
            raise ServerError(f"request body of {declared} bytes exceeds the limit of {self.limits.max_body}",
                              Status.RESOURCE_EXHAUSTED)
        chunks, size = [], 0
        stream = request.stream().__aiter__()
        while True:
            try:
                with anyio.fail_after(self.limits.body_timeout):
                    chunk = await stream.__anext__()
            except StopAsyncIteration:
                break
            except TimeoutError as e:
                raise ServerError(f"the request body stalled for {self.limits.body_timeout:.0f} s: send the whole "
                                  "body without pausing", Status.REQUEST_TIMEOUT) from e
            size += len(chunk)
            if size > self.limits.max_body:
                raise ServerError(f"request body exceeds the limit of {self.limits.max_body} bytes",
                                  Status.RESOURCE_EXHAUSTED)
            chunks.append(chunk)
        return b"".join(chunks)

    async def decoded(self, request: Request, parse: Callable[[dict, bytes], object]):
        """Read the body, then inflate, split and parse it (``parse(header, binary)``) on a decoding thread."""
        data = await self.body(request)
        encoding = request.headers.get("content-encoding", "").lower()
        length = request.headers.get(HEADER_LENGTH)
        # a body without binary tensors is all JSON: it may inflate only to the JSON limit
        limit, which = ((self.limits.max_body, "body limit (--max-message-mb)") if length is not None
                        else (self.limits.max_json, "JSON limit (--max-json-mb)"))

        def work():
            header, binary = split_body(inflate(data, encoding, limit, which), length, self.limits)
            return parse(header, binary)

        return await anyio.to_thread.run_sync(work, limiter=self.decoding)

    async def json_body(self, request: Request) -> dict:
        header = await self.decoded(request, lambda h, b: h)
        if not isinstance(header, dict):
            raise InvalidArgument("the request body must be a JSON object")
        return header

    # -- waiting without a thread --

    async def watch(self, request: Request, cancelled: threading.Event) -> None:
        """Return when the client disconnects, setting ``cancelled``. When the server stops, set it too but go
        on: the work then ends with an error that is still answered (503, or a stream's last event)."""
        async with anyio.create_task_group() as tg:
            async def stop() -> None:
                while not self.stopping.is_set():
                    await anyio.sleep(0.2)
                cancelled.set()

            tg.start_soon(stop)
            while (await request.receive())["type"] != "http.disconnect":
                pass
            tg.cancel_scope.cancel()
        cancelled.set()

    async def until_done(self, request: Request, cancelled: threading.Event, awaitable):
        """Await ``awaitable`` while watching the client; the work stops when it goes away."""
        result = None
        async with anyio.create_task_group() as tg:
            tg.start_soon(self.watch, request, cancelled)
            try:
                result = await awaitable
            finally:
                tg.cancel_scope.cancel()
        return result

    def stopped(self, err: BaseException) -> BaseException:
        if self.stopping.is_set() and isinstance(err, ServerError) and err.status is Status.CANCELLED:
            return Unavailable("the server is shutting down: this request was stopped; send it again")
        return err

    # -- health and metadata --

    async def live(self, request: Request) -> Response:
        return Response(status_code=200 if self.plane.live() else 400)

    async def ready(self, request: Request) -> Response:
        return Response(status_code=200 if self.plane.ready() else 400)

    async def server_metadata(self, request: Request) -> Response:
        return json_response(message_json(self.plane.server_metadata()))

    async def model_ready(self, request: Request) -> Response:
        p = request.path_params
        return Response(status_code=200 if self.plane.model_ready(p["model"], p.get("version", "")) else 400)

    async def model_metadata(self, request: Request) -> Response:
        p = request.path_params
        return json_response(message_json(self.plane.model_metadata(p["model"], p.get("version", ""))))

    async def model_config(self, request: Request) -> Response:
        p = request.path_params
        return json_response(message_json(self.plane.model_config(p["model"], p.get("version", ""))))

    async def statistics(self, request: Request) -> Response:
        p = request.path_params
        return json_response(message_json(self.plane.statistics(p.get("model", ""), p.get("version", ""))))

    # -- repository --

    async def repository_index(self, request: Request) -> Response:
        header = await self.json_body(request)
        ready = flag(header.get("ready", False), "'ready'")
        return json_response([message_json(m) for m in self.plane.repository_index(ready).models])

    async def load(self, request: Request) -> Response:
        header = await self.json_body(request)
        if header.get("parameters"):
            raise InvalidArgument("load parameters (config or file overrides) are not supported")
        await anyio.to_thread.run_sync(self.plane.load, request.path_params["model"])
        return Response(status_code=200)

    async def unload(self, request: Request) -> Response:
        await anyio.to_thread.run_sync(self.plane.unload, request.path_params["model"])
        return Response(status_code=200)

    # -- system shared memory (the same key rules as gRPC) --

    async def shm_register(self, request: Request) -> Response:
        body = await self.json_body(request)
        key, offset, size = body.get("key"), body.get("offset", 0), body.get("byte_size")
        if not isinstance(key, str) or any(isinstance(v, bool) or not isinstance(v, int) for v in (offset, size)):
            raise InvalidArgument("register takes {\"key\": string, \"offset\": integer, \"byte_size\": integer}")
        self.plane.shm_register(request.path_params["name"], key, offset, size)
        return Response(status_code=200)

    async def shm_unregister(self, request: Request) -> Response:
        self.plane.shm_unregister(request.path_params.get("name", ""))
        return Response(status_code=200)

    async def shm_status(self, request: Request) -> Response:
        regions = self.plane.shm_status(request.path_params.get("name", "")).regions.values()
        return json_response([{"name": r.name, "key": r.key, "offset": r.offset, "byte_size": r.byte_size}
                              for r in regions])

    # -- inference --

    async def infer(self, request: Request) -> Response:
        p = request.path_params
        model, version = p["model"], p.get("version", "")
        self.plane.repository.get(model, version)  # an unknown model costs no body
        cancelled = threading.Event()

        def submit(header: dict, binary: bytes):
            req, binary_for = parse_infer(model, version, header, binary, self.limits)
            return self.plane.infer_async(req, None, cancelled=cancelled), binary_for

        future, binary_for = await self.decoded(request, submit)
        try:
            resp = await self.until_done(request, cancelled, asyncio.wrap_future(future))
        except ServerError as e:
            raise self.stopped(e) from e
        body, length = await anyio.to_thread.run_sync(response_body, resp, binary_for, limiter=self.decoding)
        if length is None:
            return Response(body, media_type="application/json")
        return Response(body, media_type="application/octet-stream", headers={HEADER_LENGTH: str(length)})

    async def open_stream(self, request: Request) -> tuple[Outbox, threading.Event]:
        """Decode a generate request and start it on the stream pump; a bad request raises here, so it is
        answered with its HTTP status. The caller releases the stream slot (:meth:`close_stream`)."""
        p = request.path_params
        model, version = p["model"], p.get("version", "")
        config = self.plane.model_config(model, version)
        self.plane.streams.acquire()
        try:
            cancelled = threading.Event()
            outbox = Outbox(asyncio.get_running_loop())
            pump = self.plane.stream(outbox, cancelled, lambda: None, max_in_flight=1)

            def submit(header: dict, binary: bytes) -> None:
                pump.submit(generate_request(config, model, version, header, self.limits))
                pump.end_input()

            await self.decoded(request, submit)
            first = outbox.peek()
            if isinstance(first, BaseException):
                raise first
        except BaseException:
            self.plane.streams.release()
            raise
        return outbox, cancelled

    def close_stream(self, cancelled: threading.Event) -> None:
        cancelled.set()
        self.plane.streams.release()

    async def generate(self, request: Request) -> Response:
        """Triton's generate extension: JSON keys are inputs, the last response comes back as flat JSON."""
        outbox, cancelled = await self.open_stream(request)
        try:
            async def last():
                final = None
                while (item := await outbox.aget()) is not END:
                    final = item
                return final

            final = await self.until_done(request, cancelled, last())
        finally:
            self.close_stream(cancelled)
        if isinstance(final, BaseException):
            raise self.stopped(final)
        return json_response(await anyio.to_thread.run_sync(generate_json, final, limiter=self.decoding))

    async def generate_stream(self, request: Request) -> Response:
        """Server-sent events: one ``data:`` line per response (progress first, the result last); an error
        during the work is a final ``data: {"error": ...}`` event."""
        outbox, cancelled = await self.open_stream(request)

        async def events() -> AsyncIterator[bytes]:
            while (item := await outbox.aget()) is not END:
                if isinstance(item, BaseException):
                    payload = {"error": to_http(self.stopped(item))[1]}
                else:
                    payload = await anyio.to_thread.run_sync(generate_json, item, limiter=self.decoding)
                yield f"data: {json.dumps(payload, separators=(',', ':'))}\n\n".encode()

        return EventStream(events(), lambda: self.watch(request, cancelled), lambda: self.close_stream(cancelled))


class EventStream(StreamingResponse):
    """A ``text/event-stream`` answer that stops its events when ``watch`` returns (the client went away,
    which a stream with no event yet to send would otherwise never notice), then calls ``close``."""

    def __init__(self, events: AsyncIterator[bytes], watch, close: Callable[[], None]) -> None:
        super().__init__(events, media_type="text/event-stream")
        self.events, self._watch, self._close = events, watch, close

    async def __call__(self, scope, receive, send) -> None:
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            async with anyio.create_task_group() as tg:
                async def gone() -> None:
                    await self._watch()
                    tg.cancel_scope.cancel()

                tg.start_soon(gone)
                async for event in self.events:
                    await send({"type": "http.response.body", "body": event, "more_body": True})
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                tg.cancel_scope.cancel()
        except OSError:
            pass  # the client is gone
        finally:
            self._close()


def _guard(handler):
    async def wrapped(request: Request) -> Response:
        try:
            return await handler(request)
        except Exception as e:  # noqa: BLE001 - every error is answered with Triton's JSON
            return error_response(e)
    return wrapped


def build_app(plane: DataPlane, limits: Limits, token: str | None = None, allow_origins: tuple[str, ...] = (),
              loopback_only: bool = False, static: Path | None = STATIC,
              paintings: Path | None = None) -> tuple[Starlette, HttpApi]:
    """The KServe v2 routes, /openapi.json and /docs, ``paintings`` (the style images, for the studio's
    thumbnails: ``/paintings/NAME.jpg``) and the studio's static files."""
    api = HttpApi(plane, limits)
    model = "/v2/models/{model:str}"
    shm = "/v2/systemsharedmemory"
    routes = [
        Route("/v2/health/live", _guard(api.live)),
        Route("/v2/health/ready", _guard(api.ready)),
        Route("/v2", _guard(api.server_metadata)),
        Route("/v2/models/stats", _guard(api.statistics)),
        Route("/v2/repository/index", _guard(api.repository_index), methods=["POST"]),
        Route("/v2/repository/models/{model:str}/load", _guard(api.load), methods=["POST"]),
        Route("/v2/repository/models/{model:str}/unload", _guard(api.unload), methods=["POST"]),
        Route(shm + "/status", _guard(api.shm_status)),
        Route(shm + "/region/{name:str}/status", _guard(api.shm_status)),
        Route(shm + "/region/{name:str}/register", _guard(api.shm_register), methods=["POST"]),
        Route(shm + "/region/{name:str}/unregister", _guard(api.shm_unregister), methods=["POST"]),
        Route(shm + "/unregister", _guard(api.shm_unregister), methods=["POST"]),
    ]
    for base in (model, model + "/versions/{version:str}"):
        routes += [
            Route(base, _guard(api.model_metadata)),
            Route(base + "/ready", _guard(api.model_ready)),
            Route(base + "/config", _guard(api.model_config)),
            Route(base + "/stats", _guard(api.statistics)),
            Route(base + "/infer", _guard(api.infer), methods=["POST"]),
            Route(base + "/generate", _guard(api.generate), methods=["POST"]),
            Route(base + "/generate_stream", _guard(api.generate_stream), methods=["POST"]),
        ]
    spec = document()
    routes.append(Route("/openapi.json", lambda request: json_response(spec)))
    docs = swagger_ui()
    if docs is not None:
        folder, page = docs
        routes += [Route("/docs", lambda request: Response(page, media_type="text/html")),
                   Mount("/docs", StaticFiles(directory=folder))]
    if paintings is not None and Path(paintings).is_dir():
        routes.append(Mount("/paintings", StaticFiles(directory=paintings)))
    if static is not None and static.is_dir():
        routes.append(Mount("/", StaticFiles(directory=static, html=True)))
    guard = Middleware(Guard, token=token, allow_origins=allow_origins, loopback_only=loopback_only)
    return Starlette(routes=routes, middleware=[guard]), api
