"""AsyncClient: every method of ``Client`` over ``tritonclient.grpc.aio``, to be awaited.

The request builders and answer parsers are the sync client's (``core``'s module functions and the
I/O-free ``techniques.Call``); only the I/O differs. The technique methods come from the shared
``TechniquesMixin`` and return awaitables here.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Mapping, Sequence

import grpc
import numpy as np
import tritonclient.grpc.aio as aio
from tritonclient.utils import InferenceServerException

from stylecast.contract import STYLIZED_OUTPUT

from .core import (
    Connection,
    ModelInfo,
    Style,
    build_request,
    finish_stylized,
    is_style_config,
    pick_model,
    stream_answer,
    styles_of,
    stylize_inputs,
    waited_too_long,
    weights_for,
)
from .errors import StylecastError
from .imaging import to_array
from .techniques import Call, recording

log = logging.getLogger(__name__)


class AsyncClient(Connection):
    """``async with AsyncClient(url) as c: out = await c.stylize(image, "starry_night")``."""

    TRITON = aio.InferenceServerClient

    async def close(self) -> None:
        await self._triton.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def _call(self, fn, *args, **kwargs):
        """Await a tritonclient method; retry transient errors with exponential backoff."""
        for attempt in range(self.retries + 1):
            try:
                return await fn(*args, headers=self.headers, **kwargs)
            except InferenceServerException as e:
                await asyncio.sleep(self._retry_delay(attempt, e))
        raise AssertionError("unreachable")

    # --- discovery -----------------------------------------------------------------------------

    async def is_ready(self) -> bool:
        try:
            return bool(await self._triton.is_server_ready(headers=self.headers))
        except InferenceServerException:
            return False

    async def wait_ready(self, timeout: float = 30.0) -> None:
        end = time.monotonic() + timeout
        while not await self.is_ready():
            if time.monotonic() > end:
                raise StylecastError(f"server at {self.url} not ready after {timeout}s", grpc.StatusCode.UNAVAILABLE)
            await asyncio.sleep(0.1)

    async def models(self) -> list[ModelInfo]:
        index = await self._call(self._triton.get_model_repository_index, as_json=True)
        return [ModelInfo(m["name"], m.get("version", ""), m.get("state", ""), m.get("reason", ""))
                for m in index.get("models", [])]

    async def config(self, model: str):
        if model not in self._configs:
            self._configs[model] = (await self._call(self._triton.get_model_config, model)).config
        return self._configs[model]

    async def is_style_model(self, model: str) -> bool:
        return is_style_config(await self.config(model))

    async def styles(self, model: str) -> list[str]:
        """Style names of a style model, in order (a single-style model has its own name)."""
        return styles_of(model, await self.config(model))

    async def style_models(self) -> dict[str, list[str]]:
        """{model: style names} for every ready style model."""
        ready = sorted({m.name for m in await self.models() if m.state == "READY"})
        out = {}
        for name in ready:
            cfg = await self.config(name)
            if is_style_config(cfg):
                out[name] = styles_of(name, cfg)
        return out

    # --- inference -----------------------------------------------------------------------------

    async def infer(self, model: str, inputs: Mapping[str, np.ndarray], outputs: Sequence[str] | None = None,
                    parameters: Mapping[str, object] | None = None, timeout: float | None = None,
                    version: str = "") -> dict[str, np.ndarray]:
        """Generic inference on any model: arrays in, arrays out."""
        ins, outs = build_request(inputs, outputs)
        result = await self._call(self._triton.infer, model, ins, model_version=version, outputs=outs,
                                  parameters=dict(parameters) if parameters else None,
                                  client_timeout=timeout if timeout is not None else self.timeout)
        names = outputs or [o.name for o in result.get_response().outputs]
        return {n: result.as_numpy(n) for n in names}

    async def resolve_style(self, style: Style, model: str | None = None) -> tuple[str, np.ndarray | None]:
        """Find the model for a style and build its weight vector (None for single-style models)."""
        if model is None:
            model = pick_model(await self.style_models(), style)
        return model, weights_for(style, await self.styles(model), await self.config(model))

    async def stylize(self, image, style: Style = None, *, model: str | None = None, strength: float = 1.0,
                      keep_colors: bool = False, keep_subject: bool = False, timeout: float | None = None):
        """Stylize one image (PIL or uint8 [H, W, 3] array); see ``Client.stylize``."""
        arr = to_array(image)
        model, weights = await self.resolve_style(style, model)
        out = await self.infer(model, stylize_inputs(arr, weights), [STYLIZED_OUTPUT], timeout=timeout)
        mask = (await self.segment(arr, timeout=timeout)).mask if keep_subject else None
        return finish_stylized(image, arr, out[STYLIZED_OUTPUT][0], strength, keep_colors, mask)

    async def stylize_stream(self, frames: Iterable | AsyncIterable, style: Style = None, *,
                             model: str | None = None, in_flight: int = 4, transport: str = "calls",
                             **options) -> AsyncIterator:
        """Yield stylized frames in order with at most ``in_flight`` requests outstanding (backpressure).

        ``transport="calls"`` sends concurrent ModelInfer calls; ``"stream"`` sends every frame over one
        ModelStreamInfer stream.
        """
        if transport not in ("calls", "stream"):
            raise ValueError(f"transport must be 'calls' or 'stream', got {transport!r}")
        model, weights = await self.resolve_style(style, model)
        if transport == "stream":
            async for out in self._stylize_over_stream(frames, model, weights, in_flight, **options):
                yield out
            return
        pending: deque[asyncio.Task] = deque()
        try:
            async for frame in _aiter(frames):
                if len(pending) >= in_flight:
                    yield await pending.popleft()
                pending.append(asyncio.create_task(self.stylize(frame, style, model=model, **options)))
            while pending:
                yield await pending.popleft()
        finally:
            for t in pending:
                t.cancel()

    async def _stylize_over_stream(self, frames: Iterable | AsyncIterable, model: str, weights: np.ndarray | None,
                                   in_flight: int, strength: float = 1.0, keep_colors: bool = False
                                   ) -> AsyncIterator:
        sent: deque = deque()  # (original frame, its array), in request order
        room = asyncio.Semaphore(max(1, in_flight))
        finished = asyncio.Event()  # every frame sent

        async def requests():
            k = 0
            async for frame in _aiter(frames):
                await room.acquire()
                arr = to_array(frame)
                ins, outs = build_request(stylize_inputs(arr, weights), [STYLIZED_OUTPUT])
                sent.append((frame, arr))
                yield {"model_name": model, "inputs": ins, "outputs": outs, "request_id": str(k)}
                k += 1
            finished.set()

        answers = self._triton.stream_infer(requests(), headers=self.headers)
        try:
            while True:
                result, error = await _next(answers, self.timeout, model)
                if result is None and error is None:
                    if sent:
                        raise StylecastError(f"{model}: the stream ended with {len(sent)} frames unanswered",
                                             grpc.StatusCode.UNAVAILABLE)
                    return
                original, arr = sent.popleft()
                room.release()
                if error is not None:
                    raise StylecastError.wrap(error)
                yield finish_stylized(original, arr, result.as_numpy(STYLIZED_OUTPUT)[0], strength, keep_colors)
                if finished.is_set() and not sent:
                    break
        finally:
            answers.cancel()

    # --- techniques ------------------------------------------------------------------------------

    async def _perform(self, call: Call):
        """Run a technique's call (see ``techniques.Call``): one ModelInfer, or a stream with progress."""
        if not call.streamed:
            out = await self.infer(call.model, call.inputs, call.outputs, call.params, timeout=call.timeout)
            return call.parse(out, [])
        losses: list[float] = []
        out = await self.optimize(call.model, call.inputs, progress=recording(losses, call.progress),
                                  timeout=call.timeout, **call.params)
        if call.changes is not None:
            self._configs.pop(call.changes, None)
        return call.parse(out, losses)

    async def optimize(self, technique: str, inputs: Mapping[str, np.ndarray] | None = None,
                       progress: Callable[[int, float, np.ndarray | None], bool | None] | None = None,
                       timeout: float | None = None, **params) -> dict[str, np.ndarray]:
        """Run an iterative technique over ModelStreamInfer; see ``Client.optimize``. Returning False from
        ``progress``, a timeout, or cancelling the awaiting task stops the work on the server."""
        ins, _ = build_request(inputs or {}, None)
        answered = asyncio.Event()

        async def requests():
            yield {"model_name": technique, "inputs": ins, "parameters": params or None}
            await answered.wait()  # keep the stream open until the final answer

        answers = self._triton.stream_infer(requests(), headers=self.headers)
        wait = timeout or self.timeout
        try:
            while True:
                result, error = await _next(answers, wait, technique)
                if result is None and error is None:
                    raise StylecastError(f"{technique}: the stream ended without an answer",
                                         grpc.StatusCode.UNAVAILABLE)
                if error is not None:
                    raise StylecastError.wrap(error)
                out = stream_answer(technique, result, progress)
                if out is not None:
                    return out
        finally:
            answered.set()
            answers.cancel()


async def _next(answers, wait: float | None, what: str):
    """The next (result, error) of a ModelStreamInfer stream ((None, None) when it ended), with gRPC
    failures and timeouts as StylecastError."""
    try:
        return await asyncio.wait_for(anext(answers), wait)
    except asyncio.TimeoutError:
        raise waited_too_long(what, wait) from None
    except StopAsyncIteration:
        return None, None
    except grpc.aio.AioRpcError as e:
        raise StylecastError(e.details() or str(e), e.code()) from None


async def _aiter(frames: Iterable | AsyncIterable) -> AsyncIterator:
    if isinstance(frames, AsyncIterable):
        async for f in frames:
            yield f
    else:
        for f in frames:
            yield f
