"""Domain errors of the server, and the one table that maps them to every transport's codes.

Each row of :data:`TABLE` is one error kind: its gRPC status, its HTTP status (as Triton's http_server.cc
answers it) and its Triton python-backend ``TritonError`` code. Every transport calls :func:`describe`, which
also bounds and sanitizes the message (a 100 KB model name echoed into a gRPC status would otherwise turn a
NOT_FOUND into RESOURCE_EXHAUSTED, and a lone surrogate from JSON would fail the encoding of the answer).
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass

import grpc

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Codes:
    grpc: grpc.StatusCode
    http: int
    triton: str | None  # the name of pb_utils.TritonError's code, where it has one


class Status(enum.Enum):
    """One row per error kind; ``Status.X.value`` holds its codes on every transport."""

    INVALID_ARGUMENT = Codes(grpc.StatusCode.INVALID_ARGUMENT, 400, "INVALID_ARG")
    NOT_FOUND = Codes(grpc.StatusCode.NOT_FOUND, 404, "NOT_FOUND")
    UNAVAILABLE = Codes(grpc.StatusCode.UNAVAILABLE, 503, "UNAVAILABLE")
    INTERNAL = Codes(grpc.StatusCode.INTERNAL, 500, "INTERNAL")
    ALREADY_EXISTS = Codes(grpc.StatusCode.ALREADY_EXISTS, 409, "ALREADY_EXISTS")
    DEADLINE_EXCEEDED = Codes(grpc.StatusCode.DEADLINE_EXCEEDED, 504, "UNAVAILABLE")
    UNAUTHENTICATED = Codes(grpc.StatusCode.UNAUTHENTICATED, 401, None)
    PERMISSION_DENIED = Codes(grpc.StatusCode.PERMISSION_DENIED, 403, None)
    CANCELLED = Codes(grpc.StatusCode.CANCELLED, 499, "CANCELLED")
    RESOURCE_EXHAUSTED = Codes(grpc.StatusCode.RESOURCE_EXHAUSTED, 413, "UNSUPPORTED")
    UNIMPLEMENTED = Codes(grpc.StatusCode.UNIMPLEMENTED, 501, "UNSUPPORTED")
    REQUEST_TIMEOUT = Codes(grpc.StatusCode.DEADLINE_EXCEEDED, 408, "UNAVAILABLE")


TABLE = {s.name: s.value for s in Status}

MAX_MESSAGE_CHARS = 1024  # longer messages (echoed names) are cut: a status must fit any transport's headers


class ServerError(Exception):
    """An error a caller should see, with the status it maps to. Texts follow Triton's."""

    status = Status.INTERNAL

    def __init__(self, message: str, status: Status | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status


class InvalidArgument(ServerError):
    status = Status.INVALID_ARGUMENT


class NotFound(ServerError):
    status = Status.NOT_FOUND


class Unavailable(ServerError):
    status = Status.UNAVAILABLE


class DeadlineExceeded(ServerError):
    status = Status.DEADLINE_EXCEEDED


class Cancelled(ServerError):
    status = Status.CANCELLED


class AlreadyExists(ServerError):
    status = Status.ALREADY_EXISTS


class ResourceExhausted(ServerError):
    status = Status.RESOURCE_EXHAUSTED


class Forbidden(ServerError):
    status = Status.PERMISSION_DENIED


def unknown_model(name: str, version: str | int | None = None) -> NotFound:
    if version in (None, "", -1):
        return NotFound(f"Request for unknown model: '{shorten(name)}' is not found")
    return NotFound(f"Request for unknown model: '{shorten(name)}' version {shorten(str(version))} is not found")


def shorten(text: str, limit: int = 64) -> str:
    """A name from the wire as it may appear in a message: at most ``limit`` characters."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def safe_text(text: str) -> str:
    """``text`` bounded in length and encodable as UTF-8 (lone surrogates escaped)."""
    if len(text) > MAX_MESSAGE_CHARS:
        text = text[:MAX_MESSAGE_CHARS] + "..."
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def describe(err: BaseException) -> tuple[Status, str]:
    """The status and message of any exception, for every transport. Unexpected ones are INTERNAL (logged)."""
    if isinstance(err, ServerError):
        return err.status, safe_text(err.message)
    log.error("internal error", exc_info=err)
    return Status.INTERNAL, safe_text(f"internal error: {type(err).__name__}: {err}")


def to_grpc(err: BaseException) -> tuple[grpc.StatusCode, str]:
    status, message = describe(err)
    return status.value.grpc, message


def to_http(err: BaseException) -> tuple[int, str]:
    status, message = describe(err)
    return status.value.http, message
