"""The one exception type of the client, with the gRPC status of the failure."""

from __future__ import annotations

import grpc
from tritonclient.utils import InferenceServerException


class StylecastError(Exception):
    """Every failure the client reports. ``status`` is the gRPC status code (an enum)."""

    def __init__(self, message: str, status: grpc.StatusCode = grpc.StatusCode.UNKNOWN) -> None:
        super().__init__(f"[{status.name}] {message}")
        self.message = message
        self.status = status

    @property
    def transient(self) -> bool:
        """Worth retrying: UNAVAILABLE (queue full, draining, starting), or a model with no available
        version, which Triton and the embedded server answer with NOT_FOUND while it (re)loads."""
        return self.status == grpc.StatusCode.UNAVAILABLE or (
            self.status == grpc.StatusCode.NOT_FOUND and "has no available versions" in str(self))

    @classmethod
    def wrap(cls, e: InferenceServerException) -> StylecastError:
        text = e.status() or ""
        name = text.replace("StatusCode.", "")
        status = getattr(grpc.StatusCode, name, grpc.StatusCode.UNKNOWN)
        return cls(e.message(), status)
