"""uvicorn on its own thread, bound before it starts (so port 0 picks a free port)."""

from __future__ import annotations

import logging
import socket
import threading
from pathlib import Path

from ..dataplane import DataPlane
from .codec import Limits
from .routes import build_app
from .security import is_loopback

log = logging.getLogger(__name__)


class HttpServer:
    """The HTTP/REST transport of one data plane. ``close(grace)`` lets requests in flight finish for most of
    the grace period, then cancels them: each still gets Triton's error JSON (503), and a stream a final error
    event, instead of a cut connection."""

    def __init__(self, plane: DataPlane, host: str, port: int, limits: Limits, token: str | None = None,
                 tls_cert: str | None = None, tls_key: str | None = None, allow_origins: tuple[str, ...] = (),
                 grace: float = 5.0, paintings: Path | None = None) -> None:
        import uvicorn

        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, port))
        self.port = self._sock.getsockname()[1]
        self.app, self.api = build_app(plane, limits, token, allow_origins, loopback_only=is_loopback(host),
                                       paintings=paintings)
        self.grace = grace
        config = uvicorn.Config(self.app, log_level="warning", access_log=False, ssl_certfile=tls_cert,
                                ssl_keyfile=tls_key, timeout_graceful_shutdown=grace)
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
        self._thread.join(timeout=max(0.0, self.grace - 1.0))
        self.api.stopping.set()  # what is still running is cancelled and answered
        self._thread.join(timeout=10)
        self._sock.close()
