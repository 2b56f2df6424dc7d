"""Client core over ``tritonclient.grpc``: raised message limits, timeouts, retries, one exception type."""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import grpc
import numpy as np
import tritonclient.grpc as tc
from tritonclient.utils import InferenceServerException

from stylecast.contract import (
    IMAGE_INPUT,
    KIND_PARAMETER,
    STYLE_MODEL_KIND,
    STYLE_WEIGHTS_INPUT,
    STYLES_PARAMETER,
    STYLIZED_OUTPUT,
    parse_styles,
)

from .errors import StylecastError
from .imaging import blend_strength, keep_subject, like_input, preserve_color, to_array
from .techniques import Call, Explanation, TechniquesMixin, recording  # noqa: F401 - Explanation re-exported

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelInfo:
    name: str
    version: str
    state: str
    reason: str


Style = str | Mapping[str, float] | Sequence[float] | None


class Connection(TechniquesMixin):
    """What the blocking and the asyncio client share: the address, timeouts, retries, the bearer token and
    the underlying tritonclient (``TRITON``: ``tritonclient.grpc`` or its ``aio``), with raised message limits."""

    TRITON: type = tc.InferenceServerClient

    def __init__(self, url: str = "127.0.0.1:8001", *, timeout: float | None = 60.0, retries: int = 3,
                 backoff: float = 0.2, ssl: bool = False, root_certificates: str | None = None,
                 token: str | None = None, max_message_mb: int = 64) -> None:
        self.url, self.timeout, self.retries, self.backoff = url, timeout, retries, backoff
        self.headers = auth_headers(token)
        self._triton = self.TRITON(url, ssl=ssl, root_certificates=root_certificates,
                                   channel_args=channel_args(max_message_mb))
        self._configs: dict[str, object] = {}

    @property
    def triton(self):
        """The underlying tritonclient, for anything this class does not wrap."""
        return self._triton

    def _retry_delay(self, attempt: int, e: InferenceServerException) -> float:
        """The wait before retry ``attempt + 1`` of a failed call; raises the error when it is not transient
        (see ``StylecastError.transient``) or the retries are spent."""
        err = StylecastError.wrap(e)
        if not err.transient or attempt == self.retries:
            raise err from None
        delay = self.backoff * (2 ** attempt)
        log.info("%s unavailable (%s); retry %d in %.2fs", self.url, err.message, attempt + 1, delay)
        return delay


class Client(Connection):
    """A connection to Triton or the embedded server. Use as a context manager."""

    def close(self) -> None:
        self._triton.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _call(self, fn, *args, **kwargs):
        """Call a tritonclient method; retry transient errors (see ``transient``) with exponential backoff."""
        for attempt in range(self.retries + 1):
            try:
                return fn(*args, headers=self.headers, **kwargs)
            except InferenceServerException as e:
                time.sleep(self._retry_delay(attempt, e))
        raise AssertionError("unreachable")

    # --- discovery -----------------------------------------------------------------------------

    def is_ready(self) -> bool:
        try:
            return bool(self._triton.is_server_ready(headers=self.headers))
        except InferenceServerException:
            return False

    def wait_ready(self, timeout: float = 30.0) -> None:
        end = time.monotonic() + timeout
        while not self.is_ready():
            if time.monotonic() > end:
                raise StylecastError(f"server at {self.url} not ready after {timeout}s", grpc.StatusCode.UNAVAILABLE)
            time.sleep(0.1)

    def models(self) -> list[ModelInfo]:
        index = self._call(self._triton.get_model_repository_index, as_json=True)
        return [ModelInfo(m["name"], m.get("version", ""), m.get("state", ""), m.get("reason", ""))
                for m in index.get("models", [])]

    def config(self, model: str):
        if model not in self._configs:
            self._configs[model] = self._call(self._triton.get_model_config, model).config
        return self._configs[model]

    def is_style_model(self, model: str) -> bool:
        return is_style_config(self.config(model))

    def styles(self, model: str) -> list[str]:
        """Style names of a style model, in order (a single-style model has its own name)."""
        return styles_of(model, self.config(model))

    def style_models(self) -> dict[str, list[str]]:
        """{model: style names} for every ready style model."""
        ready = {m.name for m in self.models() if m.state == "READY"}
        return {name: styles_of(name, cfg) for name in sorted(ready)
                if is_style_config(cfg := self.config(name))}

    # --- inference -----------------------------------------------------------------------------

    def infer(self, model: str, inputs: Mapping[str, np.ndarray], outputs: Sequence[str] | None = None,
              parameters: Mapping[str, object] | None = None, timeout: float | None = None,
              version: str = "") -> dict[str, np.ndarray]:
        """Generic inference on any model: arrays in, arrays out."""
        ins, outs = build_request(inputs, outputs)
        result = self._call(self._triton.infer, model, ins, model_version=version, outputs=outs,
                            parameters=dict(parameters) if parameters else None,
                            client_timeout=timeout if timeout is not None else self.timeout)
        names = outputs or [o.name for o in result.get_response().outputs]
        return {n: result.as_numpy(n) for n in names}

    def resolve_style(self, style: Style, model: str | None = None) -> tuple[str, np.ndarray | None]:
        """Find the model for a style and build its weight vector (None for single-style models)."""
        if model is None:
            model = pick_model(self.style_models(), style)
        return model, weights_for(style, self.styles(model), self.config(model))

    def stylize(self, image, style: Style = None, *, model: str | None = None, strength: float = 1.0,
                keep_colors: bool = False, keep_subject: bool = False, timeout: float | None = None):
        """Stylize one image (PIL or uint8 [H, W, 3] array, any size); returns the same kind.

        ``style``: a style name, ``{name: weight}`` to blend several, or a weight vector.
        ``strength`` blends back toward the photo; ``keep_colors`` keeps the photo's colours;
        ``keep_subject`` paints the background only, the subject found by the server's ``segmentation``
        technique (the sidecar) staying as in the photo, with a soft edge.
        """
        arr = to_array(image)
        model, weights = self.resolve_style(style, model)
        out = self.infer(model, stylize_inputs(arr, weights), [STYLIZED_OUTPUT], timeout=timeout)
        mask = self.segment(arr, timeout=timeout).mask if keep_subject else None
        return finish_stylized(image, arr, out[STYLIZED_OUTPUT][0], strength, keep_colors, mask)

    def stylize_stream(self, frames: Iterable, style: Style = None, *, model: str | None = None,
                       in_flight: int = 4, transport: str = "calls", **options) -> Iterator:
        """Stylize a sequence of frames with up to ``in_flight`` requests outstanding; yields in order.

        ``transport="calls"`` sends concurrent ModelInfer calls; ``"stream"`` sends every frame over one
        ModelStreamInfer stream. Either way reading ahead stops while ``in_flight`` frames are unanswered
        (backpressure, bounded memory).
        """
        model, weights = self.resolve_style(style, model)
        if transport == "stream":
            yield from self._stylize_over_stream(frames, model, weights, in_flight, **options)
            return
        if transport != "calls":
            raise ValueError(f"transport must be 'calls' or 'stream', got {transport!r}")
        from concurrent.futures import ThreadPoolExecutor

        pending: deque = deque()
        with ThreadPoolExecutor(max(1, in_flight)) as pool:
            for frame in frames:
                if len(pending) >= in_flight:
                    yield pending.popleft().result()
                pending.append(pool.submit(self.stylize, frame, style, model=model, **options))
            while pending:
                yield pending.popleft().result()

    def _perform(self, call: Call):
        """Run a technique's call (see ``techniques.Call``): one ModelInfer, or a stream with progress."""
        if not call.streamed:
            out = self.infer(call.model, call.inputs, call.outputs, call.params, timeout=call.timeout)
            return call.parse(out, [])
        losses: list[float] = []
        out = self.optimize(call.model, call.inputs, progress=recording(losses, call.progress), timeout=call.timeout,
                            **call.params)
        if call.changes is not None:
            self._configs.pop(call.changes, None)
        return call.parse(out, losses)

    def optimize(self, technique: str, inputs: Mapping[str, np.ndarray] | None = None,
                 progress: Callable[[int, float, np.ndarray | None], bool | None] | None = None,
                 timeout: float | None = None, **params) -> dict[str, np.ndarray]:
        """Run an iterative technique (``fooling``, ``deepdream``, ``gatys``, ...) over ModelStreamInfer.
        ``progress(step, loss, preview_or_None)`` sees every progress response and may
        return False to cancel the work on the server. Returns the final outputs."""
        import queue

        answers: queue.Queue = queue.Queue()
        ins, _ = build_request(inputs or {}, None)
        self._triton.start_stream(callback=lambda result, error: answers.put((result, error)), headers=self.headers)
        done = False
        try:
            self._triton.async_stream_infer(technique, ins, parameters=params or None)
            while True:
                try:
                    result, error = answers.get(timeout=timeout or self.timeout)
                except queue.Empty:
                    raise waited_too_long(technique, timeout or self.timeout) from None
                if error is not None:
                    raise StylecastError.wrap(error)
                out = stream_answer(technique, result, progress)
                if out is not None:
                    done = True
                    return out
        finally:  # a caller that gives up (cancel, timeout, error) stops the work on the server too
            self._triton.stop_stream(cancel_requests=not done)

    def _stylize_over_stream(self, frames: Iterable, model: str, weights: np.ndarray | None, in_flight: int,
                             strength: float = 1.0, keep_colors: bool = False) -> Iterator:
        import queue

        answers: queue.Queue = queue.Queue()
        self._triton.start_stream(callback=lambda result, error: answers.put((result, error)),
                                  headers=self.headers)
        sent: deque = deque()  # (original frame, its array), in request order

        def receive():
            result, error = answers.get(timeout=self.timeout)
            original, arr = sent.popleft()
            if error is not None:
                raise StylecastError.wrap(error)
            return finish_stylized(original, arr, result.as_numpy(STYLIZED_OUTPUT)[0], strength, keep_colors)

        try:
            for k, frame in enumerate(frames):
                if len(sent) >= in_flight:
                    yield receive()
                arr = to_array(frame)
                ins, outs = build_request(stylize_inputs(arr, weights), [STYLIZED_OUTPUT])
                sent.append((frame, arr))
                self._triton.async_stream_infer(model, ins, outputs=outs, request_id=str(k))
            while sent:
                yield receive()
        finally:
            self._triton.stop_stream(cancel_requests=bool(sent))


def stream_answer(technique: str, result, progress) -> dict[str, np.ndarray] | None:
    """One answer on a technique's stream: the outputs when it is the final one; else None, after showing
    the step to ``progress`` (which cancels the work by returning False)."""
    resp = result.get_response()
    names = [o.name for o in resp.outputs]
    final = resp.parameters.get("triton_final_response")
    if final is None or final.bool_param:
        return {n: result.as_numpy(n) for n in names}
    if progress is not None:
        preview = result.as_numpy("image") if "image" in names else None
        if progress(int(result.as_numpy("step")[0]), float(result.as_numpy("loss")[0]), preview) is False:
            raise StylecastError(f"{technique} cancelled by the caller", grpc.StatusCode.CANCELLED)
    return None


def waited_too_long(what: str, seconds: float | None) -> StylecastError:
    return StylecastError(f"no answer from {what} within {seconds}s", grpc.StatusCode.DEADLINE_EXCEEDED)


def channel_args(max_message_mb: int) -> list[tuple[str, int]]:
    """gRPC message limits raised for images, both ways."""
    limit = max_message_mb * 1024 * 1024
    return [("grpc.max_send_message_length", limit), ("grpc.max_receive_message_length", limit)]


def auth_headers(token: str | None) -> dict[str, str] | None:
    return {"authorization": f"Bearer {token}"} if token else None


def is_style_config(cfg) -> bool:
    kind = cfg.parameters.get(KIND_PARAMETER)
    if kind is not None and kind.string_value == STYLE_MODEL_KIND:
        return True
    return IMAGE_INPUT in {i.name for i in cfg.input} and STYLIZED_OUTPUT in {o.name for o in cfg.output}


def styles_of(model: str, cfg) -> list[str]:
    p = cfg.parameters.get(STYLES_PARAMETER)
    return parse_styles(p.string_value) if p is not None and p.string_value else [model]


def pick_model(models: dict[str, list[str]], style: Style) -> str:
    """The style model holding ``style`` (a name, the names of a mapping, or a vector's length)."""
    if not models:
        raise StylecastError("the server has no style models", grpc.StatusCode.NOT_FOUND)
    if style is None:
        return next(iter(models))
    if isinstance(style, str):
        if style in models and len(models[style]) == 1:
            return style
        match = [m for m, names in models.items() if style in names]
    elif isinstance(style, Mapping):
        match = [m for m, names in models.items() if set(style) <= set(names)]
    else:
        match = [m for m, names in models.items() if len(names) == len(style) > 1]
    if not match:
        raise StylecastError(f"no style model holds style {style!r}; available: {models}", grpc.StatusCode.NOT_FOUND)
    return match[0]


def weights_for(style: Style, names: list[str], cfg) -> np.ndarray | None:
    """The ``style_weights`` row for a model, or None for a single-style model without that input."""
    if len(names) == 1 and STYLE_WEIGHTS_INPUT not in {i.name for i in cfg.input}:
        return None
    return style_vector(style, names)


def build_request(inputs: Mapping[str, np.ndarray], outputs: Sequence[str] | None):
    """tritonclient InferInput / InferRequestedOutput objects (shared by the sync and aio clients)."""
    from tritonclient.utils import np_to_triton_dtype

    ins = []
    for name, arr in inputs.items():
        arr = np.ascontiguousarray(arr)
        t = tc.InferInput(name, list(arr.shape), "BYTES" if arr.dtype == np.object_ else np_to_triton_dtype(arr.dtype))
        t.set_data_from_numpy(arr)
        ins.append(t)
    return ins, ([tc.InferRequestedOutput(n) for n in outputs] if outputs else None)


def stylize_inputs(arr: np.ndarray, weights: np.ndarray | None) -> dict[str, np.ndarray]:
    inputs = {IMAGE_INPUT: arr[None]}
    if weights is not None:
        inputs[STYLE_WEIGHTS_INPUT] = weights[None]
    return inputs


def finish_stylized(original, arr: np.ndarray, out: np.ndarray, strength: float, keep_colors: bool,
                    subject: np.ndarray | None = None):
    if keep_colors:
        out = preserve_color(arr, out)
    out = blend_strength(arr, out, strength)
    return like_input(out if subject is None else keep_subject(arr, out, subject), original)


def style_vector(style: Style, names: list[str]) -> np.ndarray:
    """A style name, a {name: weight} mapping or a vector -> FP32 weights over ``names``."""
    n = len(names)
    if style is None:
        style = names[0]
    if isinstance(style, str):
        if style not in names:
            raise StylecastError(f"unknown style {style!r}; this model has {names}", grpc.StatusCode.INVALID_ARGUMENT)
        w = np.zeros(n, np.float32)
        w[names.index(style)] = 1.0
        return w
    if isinstance(style, Mapping):
        unknown = [k for k in style if k not in names]
        if unknown:
            raise StylecastError(f"unknown style(s) {unknown}; this model has {names}",
                                 grpc.StatusCode.INVALID_ARGUMENT)
        w = np.array([float(style.get(k, 0.0)) for k in names], np.float32)
    else:
        w = np.asarray(style, np.float32)
        if w.shape != (n,):
            raise StylecastError(f"expected {n} style weights, got shape {w.shape}", grpc.StatusCode.INVALID_ARGUMENT)
    # Checked before normalizing: any finite non-negative blend is fine, its sum becomes 1.
    if not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
        raise StylecastError(f"style weights must be finite and non-negative with a positive sum, got {w.tolist()}",
                             grpc.StatusCode.INVALID_ARGUMENT)
    return w / w.sum()
