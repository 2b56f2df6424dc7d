"""Assembles repository, data plane, gRPC services and metrics into one embedded server."""

from __future__ import annotations

import logging
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from tritonclient.grpc import service_pb2_grpc

from .dataplane import DataPlane
from .metrics import MetricsServer
from .repository import ControlMode, ModelRepository
from .servicer import InferenceServicer, TokenAuthInterceptor

log = logging.getLogger(__name__)


@dataclass
class ServerOptions:
    model_repository: str | Path | None = "model_repository"
    host: str = "127.0.0.1"
    port: int = 8001
    metrics_port: int | None = 8002  # None disables metrics; 0 picks a free port
    http_port: int | None = None  # KServe v2 HTTP/REST and the web studio (Triton: 8000); None disables
    model_control_mode: ControlMode = ControlMode.NONE
    load_models: list[str] = field(default_factory=list)
    max_message_mb: int = 64
    workers: int = 16
    tls_cert: str | None = None
    tls_key: str | None = None
    token: str | None = None
    sidecar: bool = False  # host the PyTorch techniques (saliency, Grad-CAM, ...) next to the models
    max_optimizations: int = 1  # iterative techniques running at once (the rest wait for a slot)
    allow_learning: bool = False  # serve learn_style: it writes new model versions into the repository
    max_streams: int = 8  # streams open at once over gRPC and HTTP; the next one gets UNAVAILABLE / 503
    max_json_mb: int = 16  # the JSON part of an HTTP request (binary tensors: max_message_mb)
    max_json_elements: int = 4 * 1024 * 1024  # elements of the JSON tensors of one HTTP request
    allow_origins: tuple[str, ...] = ()  # web origins (besides the server's own) whose pages may call the API
    grace: float = 5.0  # seconds requests in flight get to finish when the server stops
    upstream: str | None = None  # HOST:PORT of a KServe v2 gRPC server whose models this one forwards
    paintings: str | Path | None = None  # folder of style images NAME.jpg: the studio's thumbnails


class Server:
    """``Server(options).start()`` returns the bound port; ``stop()`` drains and shuts down."""

    def __init__(self, options: ServerOptions, repository: ModelRepository | None = None) -> None:
        self.options = options
        self.repository = repository or ModelRepository(
            options.model_repository, options.model_control_mode, options.load_models)
        self.plane = DataPlane(self.repository, options.max_message_mb * 1024 * 1024, options.max_streams)
        self.health = health.HealthServicer()
        self.metrics: MetricsServer | None = None
        self.http = None
        self.port: int | None = None
        self._grpc: grpc.Server | None = None
        self.upstream = None

    def start(self) -> int:
        o = self.options
        if o.sidecar:
            from .sidecar import catalog
            from .sidecar.spec import Slots

            names = catalog.register(self.repository, Slots(o.max_optimizations), o.allow_learning)
            log.info("sidecar techniques: %s", ", ".join(names))
        if o.upstream:
            from .upstream import Upstream

            self.upstream = Upstream(o.upstream, max_message_mb=o.max_message_mb)
            self.upstream.attach(self.repository)
        self.repository.start()
        limit = o.max_message_mb * 1024 * 1024
        interceptors = [TokenAuthInterceptor(o.token)] if o.token else []
        self._grpc = grpc.server(
            futures.ThreadPoolExecutor(max_workers=o.workers, thread_name_prefix="grpc"),
            interceptors=interceptors,
            options=[("grpc.max_receive_message_length", limit), ("grpc.max_send_message_length", limit),
                     ("grpc.so_reuseport", 0)],
        )
        service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(InferenceServicer(self.plane), self._grpc)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self._grpc)
        address = f"{o.host}:{o.port}"
        if o.tls_cert and o.tls_key:
            creds = grpc.ssl_server_credentials([(Path(o.tls_key).read_bytes(), Path(o.tls_cert).read_bytes())])
            self.port = self._grpc.add_secure_port(address, creds)
        else:
            self.port = self._grpc.add_insecure_port(address)
        if not self.port:
            raise OSError(f"could not bind {address}")
        self._grpc.start()
        self.health.set("", health_pb2.HealthCheckResponse.SERVING)
        self.health.set("inference.GRPCInferenceService", health_pb2.HealthCheckResponse.SERVING)
        if o.metrics_port is not None:
            self.metrics = MetricsServer(self.repository, o.host, o.metrics_port)
        if o.http_port is not None:
            from .http import HttpServer, Limits

            limits = Limits(max_body=limit, max_json=o.max_json_mb * 1024 * 1024,
                            max_json_elements=o.max_json_elements)
            self.http = HttpServer(self.plane, o.host, o.http_port, limits, o.token, o.tls_cert, o.tls_key,
                                   o.allow_origins, o.grace, Path(o.paintings) if o.paintings else None)
        log.info("serving %s on %s:%d (%s)", o.model_repository or "the sidecar's techniques alone", o.host,
                 self.port, "TLS" if o.tls_cert else "plaintext")
        return self.port

    def wait(self) -> None:
        if self._grpc is not None:
            self._grpc.wait_for_termination()

    def stop(self, grace: float | None = None) -> None:
        grace = self.options.grace if grace is None else grace
        self.health.enter_graceful_shutdown()
        if self.http is not None:
            self.http.close()
        if self._grpc is not None:
            self._grpc.stop(grace).wait()
        if self.metrics is not None:
            self.metrics.close()
        if self.upstream is not None:
            self.upstream.close()
        self.plane.close()
