"""`stylecast serve` and `stylecast sidecar-repository`."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

log = logging.getLogger("stylecast")


def _cmd_serve(a: argparse.Namespace) -> int:
    import signal

    from stylecast.server.app import Server, ServerOptions

    opts = ServerOptions(
        model_repository=a.model_repository or None, host=a.host, port=a.port,
        metrics_port=None if a.metrics_port < 0 else a.metrics_port,
        http_port=None if a.http_port < 0 else a.http_port, model_control_mode=a.model_control_mode,
        load_models=a.load_model or [], max_message_mb=a.max_message_mb, workers=a.workers,
        tls_cert=a.tls_cert, tls_key=a.tls_key, token=a.token, sidecar=a.sidecar and _torch_available(),
        max_optimizations=a.max_optimizations, max_streams=a.max_streams, max_json_mb=a.max_json_mb,
        max_json_elements=a.max_json_elements, allow_origins=tuple(a.allow_origin or ()), grace=a.grace,
        allow_learning=a.allow_learning, upstream=a.upstream, paintings=_paintings(a),
    )
    server = Server(opts)
    port = server.start()
    http = f", HTTP/REST and the web studio on http://{a.host}:{server.http.port}/" if server.http else ""
    what = a.model_repository or "the sidecar's techniques"
    print(f"stylecast serving {what} on {a.host}:{port} (gRPC){http}", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: server.stop())
    try:
        server.wait()
    except KeyboardInterrupt:
        server.stop()
    return 0


def _paintings(a: argparse.Namespace) -> str | None:
    """--paintings, else the styles/ folder beside the model repository (or in the working folder)."""
    if a.paintings is not None:
        return a.paintings or None
    beside = Path(a.model_repository).resolve().parent / "styles" if a.model_repository else Path("styles")
    return str(beside) if beside.is_dir() else None


def _torch_available() -> bool:
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        log.warning("torch is not installed: serving without the sidecar techniques")
        return False
    return True


def _cmd_sidecar_repository(a: argparse.Namespace) -> int:
    from stylecast.server.sidecar.triton_python import write_repository

    names = write_repository(a.out, a.only.split(",") if a.only else None)
    print(f"wrote {len(names)} Triton python-backend models to {a.out}: {', '.join(names)}")
    return 0


def add_sidecar_repository(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sidecar-repository",
                       help="write the techniques as Triton python-backend models, so Triton can serve them too")
    p.add_argument("out", help="model repository folder to write into (e.g. model_repository)")
    p.add_argument("--only", help="comma-separated techniques (default: all)")
    p.set_defaults(func=_cmd_sidecar_repository)


def add_serve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="serve a model repository over Triton's gRPC protocol")
    p.add_argument("--model-repository", default="model_repository", help="'' serves the sidecar alone")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default loopback only)")
    p.add_argument("--port", type=int, default=8001)
    p.add_argument("--http-port", type=int, default=8000,
                   help="KServe v2 HTTP/REST and the web studio at / (Triton's 8000); -1 disables")
    p.add_argument("--metrics-port", type=int, default=8002,
                   help="Prometheus /metrics port, unauthenticated (keep --host on loopback or firewall it); "
                   "-1 disables")
    p.add_argument("--model-control-mode", default="none", choices=["none", "explicit", "poll"])
    p.add_argument("--load-model", action="append", help="model to load at start (explicit mode)")
    p.add_argument("--max-message-mb", type=int, default=64)
    p.add_argument("--workers", type=int, default=16, help="gRPC worker threads")
    p.add_argument("--tls-cert")
    p.add_argument("--tls-key")
    p.add_argument("--token", help="require 'authorization: Bearer TOKEN' on every gRPC and HTTP call "
                   "(health checks and the static web page stay open; metrics are not covered)")
    p.add_argument("--no-sidecar", dest="sidecar", action="store_false",
                   help="do not host the PyTorch techniques (saliency, Grad-CAM, ...)")
    p.add_argument("--max-optimizations", type=int, default=1,
                   help="iterative techniques (DeepDream, Gatys, ...) running at once; the rest wait for a slot")
    p.add_argument("--allow-learning", action="store_true",
                   help="serve the learn_style technique: a client's painting becomes a new style of a model of the "
                   "repository (it writes the model's next version and takes minutes of CPU)")
    p.add_argument("--max-streams", type=int, default=8,
                   help="streams open at once (gRPC ModelStreamInfer, HTTP generate and generate_stream); the next "
                   "is refused with UNAVAILABLE / 503")
    p.add_argument("--max-json-mb", type=int, default=16,
                   help="limit of the JSON part of an HTTP request, after decompression (binary tensors are bounded "
                   "by --max-message-mb): JSON tensors cost about 10x their size to parse")
    p.add_argument("--max-json-elements", type=int, default=4 * 1024 * 1024,
                   help="elements of all JSON tensors of one HTTP request")
    p.add_argument("--allow-origin", action="append", metavar="ORIGIN",
                   help="let web pages of ORIGIN (e.g. https://app.example) call the HTTP API; by default only the "
                   "server's own page may (repeat; '*' allows any)")
    p.add_argument("--grace", type=float, default=5.0,
                   help="seconds requests in flight get to finish on SIGTERM; then they are answered 503 / an "
                   "error event")
    p.add_argument("--paintings", metavar="DIR",
                   help="folder of the style images (NAME.jpg), shown as thumbnails in the studio (default: styles/ "
                   "beside the model repository, or in the working folder; '' for none)")
    p.add_argument("--upstream", metavar="HOST:PORT",
                   help="also serve every ready model of this KServe v2 gRPC server (Triton, say) by forwarding "
                   "its requests: the split deployment's sidecar offers Triton's style models in its index and "
                   "studio")
    p.set_defaults(func=_cmd_serve)
