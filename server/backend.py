"""The backend interface: one class per runtime, with load / infer / unload."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np
from tritonclient.grpc import model_config_pb2 as mc


class Backend(ABC):
    """Runs one version of one model. ``infer`` must be safe to call from several threads."""

    #: Protocol-level name reported in ModelMetadata ("platform").
    platform: str = ""

    def __init__(self, config: mc.ModelConfig, version_dir: Path) -> None:
        self.config = config
        self.version_dir = version_dir

    @abstractmethod
    def load(self) -> None:
        """Load weights and check/auto-complete ``self.config`` against them."""

    @abstractmethod
    def infer(self, inputs: dict[str, np.ndarray], outputs: list[str], parameters: dict,
              emit=None) -> dict[str, np.ndarray]:
        """Run a (possibly batched) request; return the named outputs. Decoupled backends may call
        ``emit(partial_outputs)`` for progress; it returns False once the caller has gone."""

    def check_parameters(self, parameters: dict) -> dict:
        """Validate request parameters; return the ones that affect execution (they split batches).

        Like Triton's ONNX Runtime backend, plain models ignore request parameters.
        """
        return {}

    def check_inputs(self, inputs: dict[str, np.ndarray]) -> None:  # noqa: B027 - optional hook
        """Refuse (InvalidArgument) input values this model cannot use, after the config's generic checks of
        names, datatypes and shapes; e.g. a style model's weights outside the contract."""

    def response_bytes(self, inputs: dict[str, np.ndarray], outputs: list[str]) -> int | None:
        """The answer's size in bytes when it can be told before any work (None: unknown, or bounded)."""
        return None

    def unload(self) -> None:  # noqa: B027 - optional hook
        """Release what ``load`` acquired."""
