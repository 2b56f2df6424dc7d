"""The transport-free data plane: every protocol operation. Inference takes and gives the neutral
:mod:`.inference` types (each transport's codec converts its wire format); the other operations answer with
the protocol's messages, which HTTP writes as Triton's JSON."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout

from tritonclient.grpc import model_config_pb2 as mc
from tritonclient.grpc import service_pb2 as pb

from stylecast import __version__

from .datatypes import datatype_of
from .errors import DeadlineExceeded, InvalidArgument, ServerError
from .inference import Request, Response
from .repository import ModelRepository
from .shm import SharedMemoryManager
from .streams import Outbox, StreamLimit, StreamPump
from .tensors import InferRequest, InferResult, RequestedOutput, decode_request, encode_response

log = logging.getLogger(__name__)

SERVER_NAME = "stylecast"
EXTENSIONS = ["classification", "model_repository", "model_repository(unload_dependents)", "schedule_policy",
              "model_configuration", "system_shared_memory", "statistics", "binary_tensor_data"]


class DataPlane:
    def __init__(self, repository: ModelRepository, max_message_bytes: int | None = None,
                 max_streams: int = 8) -> None:
        self.repository = repository
        self.shm = SharedMemoryManager()
        self.max_message_bytes = max_message_bytes  # the transport's limit on one answer
        self.streams = StreamLimit(max_streams)

    # --- health and metadata -------------------------------------------------------------------

    def live(self) -> bool:
        return True

    def ready(self) -> bool:
        return self.repository.all_ready()

    def model_ready(self, name: str, version: str = "") -> bool:
        try:
            self.repository.get(name, version)
            return True
        except ServerError:
            return False

    def server_metadata(self) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(name=SERVER_NAME, version=__version__, extensions=EXTENSIONS)

    def model_metadata(self, name: str, version: str = "") -> pb.ModelMetadataResponse:
        model = self.repository.get(name, version)
        cfg = model.config
        batch = [-1] if cfg.max_batch_size > 0 else []
        resp = pb.ModelMetadataResponse(name=name, versions=[str(v) for v in sorted(
            self.repository.entry(name).versions)], platform=cfg.platform or cfg.backend)
        for t in cfg.input:
            resp.inputs.add(name=t.name, datatype=datatype_of(t.data_type), shape=batch + list(t.dims))
        for t in cfg.output:
            resp.outputs.add(name=t.name, datatype=datatype_of(t.data_type), shape=batch + list(t.dims))
        return resp

    def model_config(self, name: str, version: str = "") -> mc.ModelConfig:
        return self.repository.get(name, version).config

    # --- inference -----------------------------------------------------------------------------

    def infer(self, request: Request, timeout: float | None = None,
              cancelled: threading.Event | None = None) -> Response:
        """Decode, validate, queue, wait (within the caller's deadline) and encode one request.
        ``cancelled`` is set by the transport when the caller goes away: the work then stops."""
        try:
            return self.infer_async(request, timeout, cancelled=cancelled).result(timeout=timeout)
        except FutureTimeout as e:
            raise DeadlineExceeded("Deadline Exceeded") from e

    def infer_async(self, request: Request, timeout: float | None = None, emit=None,
                    cancelled: threading.Event | None = None) -> Future:
        """Queue one request; bad requests raise here, execution errors arrive through the future.
        ``emit(partial_response)`` receives the progress responses of a decoupled model."""
        t0 = time.monotonic()
        model = self.repository.get(request.model, request.version)
        try:
            t_decode = time.perf_counter_ns()
            req = decode_request(request, self.shm)
            req.decode_ns = time.perf_counter_ns() - t_decode
            req.deadline = None if timeout is None else t0 + timeout
            req.cancelled = cancelled
            self._check_answer_size(model, req)
            partial = None
            if emit is not None and model.decoupled:
                def partial(outputs: dict) -> bool:
                    sub = InferRequest(req.model, req.version, req.id, {}, [RequestedOutput(n) for n in outputs])
                    return emit(encode_response(sub, InferResult(outputs, str(model.version)), self.shm,
                                                {"triton_final_response": False}))
            inner = model.submit(req, partial)
        except ServerError:
            model.record_failure(int((time.monotonic() - t0) * 1e9))
            raise
        outer: Future = Future()

        def done(f: Future) -> None:
            try:
                final = {"triton_final_response": True} if emit is not None and model.decoupled else None
                outer.set_result(encode_response(req, InferResult(f.result(), str(model.version)), self.shm, final))
            except BaseException as e:  # noqa: BLE001 - delivered to the caller
                outer.set_exception(e)

        inner.add_done_callback(done)
        return outer

    def _check_answer_size(self, model, req: InferRequest) -> None:
        """Refuse, before any work, an answer that could not be sent (the transport's message limit)."""
        if self.max_message_bytes is None:
            return
        wire = [o.name for o in req.outputs if o.shm is None] if req.outputs else [t.name for t in model.config.output]
        size = model.backend.response_bytes(req.inputs, wire)
        if size is not None and size > self.max_message_bytes:
            mb = 1024 * 1024
            raise InvalidArgument(
                f"the answer of '{model.name}' would be about {size / mb:.0f} MiB, more than the server's message "
                f"limit of {self.max_message_bytes / mb:.0f} MiB: send a smaller image, ask for fewer outputs, "
                "or receive them in shared memory")

    def stream(self, outbox: Outbox, cancelled: threading.Event, timeout_fn: Callable[[], float | None],
               max_in_flight: int = 64, decode: Callable[[object], Request] | None = None) -> StreamPump:
        """The one stream operation (ModelStreamInfer, generate, generate_stream): see :mod:`.streams`.
        ``decode`` turns each of the transport's messages into a Request (a bad one answers its own place in
        the stream). The caller holds one of :attr:`streams` while it runs."""
        def submit(message, emit) -> Future:
            request = message if decode is None else decode(message)
            return self.infer_async(request, timeout_fn(), emit, cancelled)
        return StreamPump(submit, outbox, cancelled, max_in_flight)

    # --- statistics and repository -------------------------------------------------------------

    def statistics(self, name: str = "", version: str = "") -> pb.ModelStatisticsResponse:
        models = [self.repository.get(name, version)] if name else self.repository.ready_versions()
        resp = pb.ModelStatisticsResponse()
        for model in models:
            s = model.stats
            with s.lock:
                m = resp.model_stats.add(name=model.name, version=str(model.version),
                                         last_inference=s.last_inference_ms, inference_count=s.inference_count,
                                         execution_count=s.execution_count)
                st = m.inference_stats
                st.success.count, st.success.ns = s.success.count, s.success.ns
                st.fail.count, st.fail.ns = s.fail.count, s.fail.ns
                st.queue.count, st.queue.ns = s.queue.count, s.queue.ns
                for key in ("compute_input", "compute_infer", "compute_output"):
                    _fill(getattr(st, key), getattr(s, key))
                for size, c in sorted(s.batch.items()):
                    b = m.batch_stats.add(batch_size=size)
                    for key in ("compute_input", "compute_infer", "compute_output"):
                        _fill(getattr(b, key), getattr(c, key))
        return resp

    def repository_index(self, ready_only: bool = False) -> pb.RepositoryIndexResponse:
        resp = pb.RepositoryIndexResponse()
        for name, version, state, reason in self.repository.index():
            if ready_only and state != "READY":
                continue
            resp.models.add(name=name, version=version, state=state, reason=reason)
        return resp

    def load(self, name: str) -> None:
        self.repository.load(name)

    def unload(self, name: str) -> None:
        self.repository.unload(name)

    # --- shared memory -------------------------------------------------------------------------

    def shm_register(self, name: str, key: str, offset: int, byte_size: int) -> None:
        self.shm.register(name, key, offset, byte_size)

    def shm_unregister(self, name: str) -> None:
        self.shm.unregister(name)

    def shm_status(self, name: str = "") -> pb.SystemSharedMemoryStatusResponse:
        resp = pb.SystemSharedMemoryStatusResponse()
        for r in self.shm.status(name):
            resp.regions[r.name].CopyFrom(pb.SystemSharedMemoryStatusResponse.RegionStatus(
                name=r.name, key=r.key, offset=r.offset, byte_size=r.byte_size))
        return resp

    def close(self) -> None:
        self.repository.close()
        self.shm.close()


def _fill(duration: pb.StatisticDuration, counter) -> None:
    duration.count, duration.ns = counter.count, counter.ns
