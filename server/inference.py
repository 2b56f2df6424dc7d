"""The data plane's own request and response types: what every transport's codec produces and consumes.

A codec turns its wire format into a :class:`Request` and a :class:`Response` back into it (gRPC's protobuf in
:mod:`.protobuf`, HTTP's JSON in :mod:`.http.codec`), so the data plane never sees a wire format, as in
MLServer and KServe. A request's tensors are as sent: ``data`` holds raw bytes (checked against datatype and
shape when the data plane decodes the request), values a codec has already checked and made an array (typed
contents, JSON), or None when the tensor lies in shared memory (``parameters`` say where).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Tensor:
    """One tensor of a request or response; a requested output has a name and parameters only."""

    name: str
    datatype: str = ""
    shape: list[int] = field(default_factory=list)
    data: bytes | np.ndarray | None = None
    parameters: dict = field(default_factory=dict)


@dataclass
class Request:
    model: str
    version: str = ""
    id: str = ""
    inputs: list[Tensor] = field(default_factory=list)
    outputs: list[Tensor] = field(default_factory=list)  # none: every output of the model
    parameters: dict = field(default_factory=dict)


@dataclass
class Response:
    """Outputs hold their array, or None when written to shared memory (``parameters`` say where)."""

    model: str
    version: str
    id: str = ""
    outputs: list[Tensor] = field(default_factory=list)
    parameters: dict = field(default_factory=dict)
