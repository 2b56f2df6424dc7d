"""Where backends and runtimes plug in.

- A **backend** serves the models whose config names it (``platform`` or ``backend``): a factory
  ``(ModelConfig, version folder) -> Backend``. Built in: ``onnxruntime_onnx`` (also ``onnxruntime``).
- A **runtime** executes an ONNX file for the ONNX backend: a function ``(path, config, count) ->
  sessions``, each with ``run(outputs, feeds)``, ``inputs()`` and ``outputs()`` (TensorSpecs) and a
  ``device`` string for the log. Built in: ``onnxruntime`` (the reference) and ``openvino`` (CPU). A model
  picks one with ``parameters { key: "stylecast_runtime" ... }``; $STYLECAST_RUNTIME sets the default.

Built-ins are named as ``module:attribute`` and imported on first use, so a server without OpenVINO
never imports it. ``register_backend`` / ``register_runtime`` add more (a plugin calls them on import).

Every model is served the same way: a config that names its backend, from a folder of the repository or
declared in code (``ModelRepository.declare``), built by the factory under that name. A repository looks in
its own table first (``ModelRepository.add_backend``: backends that need one server's state, the sidecar's
``stylecast_sidecar`` and the upstream's ``stylecast_upstream``), then here.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from tritonclient.grpc import model_config_pb2 as mc

from .backend import Backend
from .config import TensorSpec

BackendFactory = Callable[[mc.ModelConfig, Path], Backend]


class Session(Protocol):
    device: str

    def run(self, outputs: list[str] | None, feeds: dict) -> list: ...

    def inputs(self) -> list[TensorSpec]: ...

    def outputs(self) -> list[TensorSpec]: ...


Runtime = Callable[[Path, mc.ModelConfig, int], list[Session]]

_BACKENDS: dict[str, str | BackendFactory] = {
    "onnxruntime_onnx": "stylecast.server.onnx_backend:OnnxRuntimeBackend",
    "onnxruntime": "stylecast.server.onnx_backend:OnnxRuntimeBackend",
}
_RUNTIMES: dict[str, str | Runtime] = {
    "onnxruntime": "stylecast.server.onnx_backend:ort_sessions",
    "openvino": "stylecast.server.onnx_backend:openvino_sessions",
}
DEFAULT_BACKEND = "onnxruntime_onnx"
DEFAULT_RUNTIME = "onnxruntime"


def _resolve(entry):
    if isinstance(entry, str):
        module, _, attr = entry.partition(":")
        return getattr(importlib.import_module(module), attr)
    return entry


def register_backend(name: str, factory: BackendFactory) -> None:
    _BACKENDS[name] = factory


def register_runtime(name: str, runtime: Runtime) -> None:
    _RUNTIMES[name] = runtime


def backend_names() -> list[str]:
    return sorted(_BACKENDS)


def runtime_names() -> list[str]:
    return sorted(_RUNTIMES)


def backend(kind: str, extra: dict[str, BackendFactory] | None = None) -> BackendFactory | None:
    """The factory for a config's platform/backend (``""``: the default), or None when none serves it."""
    kind = kind or DEFAULT_BACKEND
    entry = (extra or {}).get(kind) or _BACKENDS.get(kind)
    return None if entry is None else _resolve(entry)


def runtime(name: str) -> Runtime | None:
    entry = _RUNTIMES.get(name)
    return None if entry is None else _resolve(entry)
