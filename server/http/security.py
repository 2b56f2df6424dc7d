"""Who may call the HTTP API: the bearer token, the browser's Origin, and the Host header.

A server on a laptop has no token by default, so any web page the user opens could otherwise drive it: a
cross-origin ``POST .../unload`` with ``Content-Type: text/plain`` needs no CORS preflight, and DNS rebinding
makes a foreign name resolve to 127.0.0.1. So, on ``/v2``:

- a state-changing or compute request (any method but GET / HEAD / OPTIONS) that carries an ``Origin`` other
  than the server's own (the studio) or one allowed with ``--allow-origin`` is refused (403);
- such a request must not use the content types a page can send without a preflight (``text/plain``, forms):
  415; the API takes ``application/json`` or ``application/octet-stream`` (or no type, as tritonclient sends);
- when the server is bound to a loopback address, the ``Host`` header must name a loopback host (403), on every
  route, the page included;
- with ``--token``, ``Authorization: Bearer <token>`` is required (compared in constant time), except on the
  health routes (probes) and the static page.
"""

from __future__ import annotations

import hmac
import ipaddress
import json

SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
SIMPLE_TYPES = {"text/plain", "application/x-www-form-urlencoded", "multipart/form-data"}
LOOPBACK_NAMES = {"localhost", "localhost.", "ip6-localhost"}


def is_loopback(host: str) -> bool:
    """Whether a bind address or a Host header's host names this machine only."""
    host = host.strip("[]").lower()
    if host in LOOPBACK_NAMES or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_of(header: str) -> str:
    """The host part of a Host header (``name:port``, ``[::1]:port``)."""
    if header.startswith("["):
        return header[1:header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


class Guard:
    """ASGI middleware applying the rules of this module before any route runs."""

    def __init__(self, app, token: str | None = None, allow_origins: tuple[str, ...] = (),
                 loopback_only: bool = False) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode() if token else None
        self.allow_origins = {o.rstrip("/").lower() for o in allow_origins}
        self.loopback_only = loopback_only

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        refusal = self.refusal(scope)
        if refusal is None:
            return await self.app(scope, receive, send)
        status, message = refusal
        body = json.dumps({"error": message}).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    def refusal(self, scope) -> tuple[int, str] | None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        host = headers.get("host", "")
        if self.loopback_only and not is_loopback(host_of(host)):
            return 403, (f"Host {host[:100]!r} is not this server: a server bound to a loopback address answers "
                         "only requests to localhost or 127.0.0.1 (bind with --host to serve other names)")
        path = scope["path"]
        if not path.startswith("/v2"):
            return None
        if scope["method"] not in SAFE_METHODS:
            origin = headers.get("origin")
            if origin is not None and not self.origin_allowed(origin, host, scope.get("scheme", "http")):
                return 403, (f"requests from the web origin {origin[:100]!r} are refused: start the server with "
                             f"--allow-origin {origin[:100]} to let pages of that origin call it")
            ctype = headers.get("content-type", "").split(";")[0].strip().lower()
            if ctype in SIMPLE_TYPES:
                return 415, (f"Content-Type {ctype} is not accepted: send application/json, or "
                             "application/octet-stream for a body with binary tensors")
        if self.expected is not None and not path.startswith("/v2/health/"):
            if not hmac.compare_digest(headers.get("authorization", "").encode("latin-1"), self.expected):
                return 401, "missing or invalid bearer token"
        return None

    def origin_allowed(self, origin: str, host: str, scheme: str) -> bool:
        origin = origin.rstrip("/").lower()
        return origin == f"{scheme}://{host}".lower() or origin in self.allow_origins or "*" in self.allow_origins
