"""The thin gRPC transport: inference.GRPCInferenceService over the data plane, plus auth."""

from __future__ import annotations

import functools
import hmac
import logging
import threading

import grpc
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc

from . import protobuf
from .dataplane import DataPlane
from .errors import describe, to_grpc
from .streams import END, Outbox

log = logging.getLogger(__name__)


def remaining(context: grpc.ServicerContext) -> float | None:
    """Seconds left before the caller's deadline; None when the caller set none."""
    t = context.time_remaining()
    return None if t is None or t > 1e7 else max(0.0, t)


def cancel_event(context: grpc.ServicerContext) -> threading.Event:
    """An event set when the RPC ends for any reason (the caller's cancel included): work polls it."""
    event = threading.Event()
    if not context.add_callback(event.set):
        event.set()  # the RPC has already ended
    return event


def _rpc(method):
    """Run a unary handler; map any exception to a gRPC status in the one place that does it."""

    @functools.wraps(method)
    def wrapper(self, request, context: grpc.ServicerContext):
        try:
            return method(self, request, context)
        except Exception as e:  # noqa: BLE001
            context.abort(*to_grpc(e))

    return wrapper


class InferenceServicer(service_pb2_grpc.GRPCInferenceServiceServicer):
    def __init__(self, plane: DataPlane) -> None:
        self.plane = plane

    @_rpc
    def ServerLive(self, request, context):  # noqa: N802 - names fixed by the protocol
        return pb.ServerLiveResponse(live=self.plane.live())

    @_rpc
    def ServerReady(self, request, context):  # noqa: N802
        return pb.ServerReadyResponse(ready=self.plane.ready())

    @_rpc
    def ModelReady(self, request, context):  # noqa: N802
        return pb.ModelReadyResponse(ready=self.plane.model_ready(request.name, request.version))

    @_rpc
    def ServerMetadata(self, request, context):  # noqa: N802
        return self.plane.server_metadata()

    @_rpc
    def ModelMetadata(self, request, context):  # noqa: N802
        return self.plane.model_metadata(request.name, request.version)

    @_rpc
    def ModelConfig(self, request, context):  # noqa: N802
        return pb.ModelConfigResponse(config=self.plane.model_config(request.name, request.version))

    def decode(self, request: pb.ModelInferRequest):
        """The message as the data plane's Request; an unknown model is named before any bad tensor, as
        Triton does."""
        self.plane.repository.get(request.model_name, request.model_version)
        return protobuf.request(request)

    @_rpc
    def ModelInfer(self, request, context):  # noqa: N802
        answer = self.plane.infer(self.decode(request), remaining(context), cancel_event(context))
        return protobuf.response(answer)

    def ModelStreamInfer(self, request_iterator, context):  # noqa: N802
        """The data plane's stream pump, encoded as ModelStreamInferResponse messages; the request stream is
        read on its own thread, so frames pipeline."""
        try:
            self.plane.streams.acquire()
        except Exception as e:  # noqa: BLE001 - too many streams open
            context.abort(*to_grpc(e))
        cancelled = cancel_event(context)
        outbox = Outbox()
        pump = self.plane.stream(outbox, cancelled, lambda: remaining(context), decode=self.decode)
        threading.Thread(target=pump.run, args=(request_iterator,), name="stream-reader", daemon=True).start()
        try:
            while (item := outbox.get()) is not END:
                if isinstance(item, BaseException):
                    yield pb.ModelStreamInferResponse(error_message=describe(item)[1])
                else:
                    yield pb.ModelStreamInferResponse(infer_response=protobuf.response(item))
        finally:
            cancelled.set()
            self.plane.streams.release()

    @_rpc
    def ModelStatistics(self, request, context):  # noqa: N802
        return self.plane.statistics(request.name, request.version)

    @_rpc
    def RepositoryIndex(self, request, context):  # noqa: N802
        return self.plane.repository_index(request.ready)

    @_rpc
    def RepositoryModelLoad(self, request, context):  # noqa: N802
        self.plane.load(request.model_name)
        return pb.RepositoryModelLoadResponse()

    @_rpc
    def RepositoryModelUnload(self, request, context):  # noqa: N802
        self.plane.unload(request.model_name)
        return pb.RepositoryModelUnloadResponse()

    @_rpc
    def SystemSharedMemoryRegister(self, request, context):  # noqa: N802
        self.plane.shm_register(request.name, request.key, request.offset, request.byte_size)
        return pb.SystemSharedMemoryRegisterResponse()

    @_rpc
    def SystemSharedMemoryUnregister(self, request, context):  # noqa: N802
        self.plane.shm_unregister(request.name)
        return pb.SystemSharedMemoryUnregisterResponse()

    @_rpc
    def SystemSharedMemoryStatus(self, request, context):  # noqa: N802
        return self.plane.shm_status(request.name)


class TokenAuthInterceptor(grpc.ServerInterceptor):
    """Rejects calls without ``authorization: Bearer <token>`` (health checks stay open for probes)."""

    def __init__(self, token: str) -> None:
        self._expected = f"Bearer {token}".encode()

        def deny(request, context):
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or invalid bearer token")

        self._deny = grpc.unary_unary_rpc_method_handler(deny)
        self._deny_stream = grpc.stream_stream_rpc_method_handler(lambda it, context: deny(None, context))

    def intercept_service(self, continuation, handler_call_details):
        if handler_call_details.method.startswith("/grpc.health.v1."):
            return continuation(handler_call_details)
        md = dict(handler_call_details.invocation_metadata or ())
        if hmac.compare_digest(str(md.get("authorization", "")).encode(), self._expected):
            return continuation(handler_call_details)
        return self._deny_stream if handler_call_details.method.endswith("StreamInfer") else self._deny
