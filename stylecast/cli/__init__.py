"""The one command-line entry point. Subcommands import their component lazily (the client stays light)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable

from . import calls, explain, repository, serve, train

log = logging.getLogger("stylecast")

REGISTRARS: list[Callable[[argparse._SubParsersAction], None]] = [
    serve.add_serve, calls.add_stylize, calls.add_video, explain.add_explain, calls.add_demo, train.add_train,
    train.add_data, repository.add_export, repository.add_add_style, repository.add_remove_rename,
    repository.add_configure, serve.add_sidecar_repository]


def build_parser() -> argparse.ArgumentParser:
    from stylecast import __version__

    parser = argparse.ArgumentParser(prog="stylecast", description=__doc__)
    parser.add_argument("--version", action="version", version=f"stylecast {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="cmd", required=True)
    for register in REGISTRARS:
        register(sub)
    return parser


def failure_advice(e: BaseException, a: argparse.Namespace) -> list[str]:
    """What went wrong, in a line or two a user can act on (None: an unexpected error, shown in full)."""
    import grpc

    from stylecast.client import StylecastError

    if isinstance(e, StylecastError):
        if e.status == grpc.StatusCode.UNAVAILABLE and ("connect" in e.message or "unavailable" in e.message.lower()):
            return [f"no server answers at {getattr(a, 'url', '?')}: {e.message.splitlines()[0][:200]}",
                    "start one with `stylecast serve` (or pass --local to stylize, or --url HOST:PORT)"]
        return [f"the server answered {e.status.name}: {e.message.splitlines()[0][:300]}"]
    if isinstance(e, FileNotFoundError):
        return [f"{e.strerror or 'not found'}: {e.filename}" if e.filename else str(e)]
    if isinstance(e, (ValueError, OSError)):
        return [str(e).splitlines()[0][:300] if str(e) else type(e).__name__]
    return []


def main(argv: list[str] | None = None) -> int:
    explain.ARGV[:] = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not args.verbose:  # a client command's answer is its output; its retries are not news
        logging.getLogger("stylecast.client").setLevel(logging.WARNING)
    try:
        return int(args.func(args) or 0)
    except Exception as e:
        lines = [] if args.verbose else failure_advice(e, args)
        if not lines:
            raise
        print(f"stylecast {args.cmd}: error: {lines[0]}", file=sys.stderr)
        for line in lines[1:]:
            print(f"  {line}", file=sys.stderr)
        return 1
