"""AsyncClient: the Client's methods over ``tritonclient.grpc.aio``, plus bounded-in-flight streaming."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping, Sequence

import numpy as np
import tritonclient.grpc.aio as aio
from tritonclient.utils import InferenceServerException

from stylecast.contract import STYLIZED_OUTPUT

from .core import (
    ModelInfo,
    Style,
    StylecastError,
    auth_headers,
    build_request,
    channel_args,
    finish_stylized,
    is_style_config,
    pick_model,
    styles_of,
    stylize_inputs,
    weights_for,
)
from .imaging import to_array

log = logging.getLogger(__name__)


class AsyncClient:
    """``async with AsyncClient(url) as c: out = await c.stylize(image, "starry_night")``."""

    def __init__(self, url: str = "127.0.0.1:8001", *, timeout: float | None = 60.0, retries: int = 3,
                 backoff: float = 0.2, ssl: bool = False, root_certificates: str | None = None,
                 token: str | None = None, max_message_mb: int = 64) -> None:
        self.url, self.timeout, self.retries, self.backoff = url, timeout, retries, backoff
        self.headers = auth_headers(token)
        self._triton = aio.InferenceServerClient(url, ssl=ssl, root_certificates=root_certificates,
                                                 channel_args=channel_args(max_message_mb))
        self._configs: dict[str, object] = {}

    @property
    def triton(self) -> aio.InferenceServerClient:
        return self._triton

    async def close(self) -> None:
        await self._triton.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def _call(self, fn, *args, **kwargs):
        for attempt in range(self.retries + 1):
            try:
                return await fn(*args, headers=self.headers, **kwargs)
            except InferenceServerException as e:
                err = StylecastError.wrap(e)
                if not err.transient or attempt == self.retries:
                    raise err from None
                await asyncio.sleep(self.backoff * (2 ** attempt))
        raise AssertionError("unreachable")

    async def is_ready(self) -> bool:
        try:
            return bool(await self._triton.is_server_ready(headers=self.headers))
        except InferenceServerException:
            return False

    async def models(self) -> list[ModelInfo]:
        index = await self._call(self._triton.get_model_repository_index, as_json=True)
        return [ModelInfo(m["name"], m.get("version", ""), m.get("state", ""), m.get("reason", ""))
                for m in index.get("models", [])]

    async def config(self, model: str):
        if model not in self._configs:
            self._configs[model] = (await self._call(self._triton.get_model_config, model)).config
        return self._configs[model]

    async def styles(self, model: str) -> list[str]:
        return styles_of(model, await self.config(model))

    async def style_models(self) -> dict[str, list[str]]:
        ready = sorted({m.name for m in await self.models() if m.state == "READY"})
        out = {}
        for name in ready:
            cfg = await self.config(name)
            if is_style_config(cfg):
                out[name] = styles_of(name, cfg)
        return out

    async def infer(self, model: str, inputs: Mapping[str, np.ndarray], outputs: Sequence[str] | None = None,
                    parameters: Mapping[str, object] | None = None, timeout: float | None = None,
                    version: str = "") -> dict[str, np.ndarray]:
        ins, outs = build_request(inputs, outputs)
        result = await self._call(self._triton.infer, model, ins, model_version=version, outputs=outs,
                                  parameters=dict(parameters) if parameters else None,
                                  client_timeout=timeout if timeout is not None else self.timeout)
        names = outputs or [o.name for o in result.get_response().outputs]
        return {n: result.as_numpy(n) for n in names}

    async def resolve_style(self, style: Style, model: str | None = None) -> tuple[str, np.ndarray | None]:
        if model is None:
            model = pick_model(await self.style_models(), style)
        return model, weights_for(style, await self.styles(model), await self.config(model))

    async def stylize(self, image, style: Style = None, *, model: str | None = None, strength: float = 1.0,
                      keep_colors: bool = False, timeout: float | None = None):
        arr = to_array(image)
        model, weights = await self.resolve_style(style, model)
        out = await self.infer(model, stylize_inputs(arr, weights), [STYLIZED_OUTPUT], timeout=timeout)
        return finish_stylized(image, arr, out[STYLIZED_OUTPUT][0], strength, keep_colors)

    async def stylize_stream(self, frames: Iterable | AsyncIterable, style: Style = None, *,
                             model: str | None = None, in_flight: int = 4, **options) -> AsyncIterator:
        """Yield stylized frames in order with at most ``in_flight`` requests outstanding (backpressure)."""
        model, _ = await self.resolve_style(style, model)
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


async def _aiter(frames: Iterable | AsyncIterable) -> AsyncIterator:
    if isinstance(frames, AsyncIterable):
        async for f in frames:
            yield f
    else:
        for f in frames:
            yield f
