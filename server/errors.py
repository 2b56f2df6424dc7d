"""Domain errors of the server, and the one place that maps them to gRPC status codes."""

from __future__ import annotations

import enum

import grpc


class Status(enum.Enum):
    INVALID_ARGUMENT = grpc.StatusCode.INVALID_ARGUMENT
    NOT_FOUND = grpc.StatusCode.NOT_FOUND
    UNAVAILABLE = grpc.StatusCode.UNAVAILABLE
    INTERNAL = grpc.StatusCode.INTERNAL
    ALREADY_EXISTS = grpc.StatusCode.ALREADY_EXISTS
    DEADLINE_EXCEEDED = grpc.StatusCode.DEADLINE_EXCEEDED
    UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED
    CANCELLED = grpc.StatusCode.CANCELLED
    RESOURCE_EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED
    UNIMPLEMENTED = grpc.StatusCode.UNIMPLEMENTED


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


def unknown_model(name: str, version: str | int | None = None) -> NotFound:
    if version in (None, "", -1):
        return NotFound(f"Request for unknown model: '{name}' is not found")
    return NotFound(f"Request for unknown model: '{name}' version {version} is not found")


def to_grpc(err: BaseException) -> tuple[grpc.StatusCode, str]:
    """Map any exception to (code, message). Unexpected exceptions become INTERNAL."""
    if isinstance(err, ServerError):
        return err.status.value, err.message
    return grpc.StatusCode.INTERNAL, f"internal error: {type(err).__name__}: {err}"


class AlreadyExists(ServerError):
    status = Status.ALREADY_EXISTS
