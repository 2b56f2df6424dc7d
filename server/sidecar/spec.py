"""One declaration per technique.

A :class:`Spec` says everything about a technique: its name and description, its input and output
tensors, its typed request parameters (defaults and bounds), whether it streams progress (decoupled),
any rule across parameters, what to warm up when it loads, and the function that runs it. From the spec
come the model config the embedded server reports (and the Triton python-backend repository writes),
the parameter checks, and the one backend class, :class:`SpecBackend`, that serves every technique.
Clients read the parameters back from the model config (``param.<name>`` entries).

Adding a technique is one ``Spec(...)`` in the module of its family (``maps``, ``iterative``,
``activations``) and its run function; ``catalog`` collects the families.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tritonclient.grpc import model_config_pb2 as mc

from stylecast.contract import (
    DESCRIPTION_PARAMETER,
    FAMILY_PARAMETER,
    KIND_PARAMETER,
    TECHNIQUE_KIND,
    TECHNIQUE_PARAM_PREFIX,
    param_text,
)

from ..backend import Backend
from ..errors import Cancelled, InvalidArgument
from ..scheduler import check_stop

BACKEND = "stylecast_sidecar"  # the backend every technique's config names, and the platform it reports

# Protocol-level request parameters that are not technique knobs.
RESERVED = {"sequence_id", "sequence_start", "sequence_end", "priority", "timeout"}

# progress(step, loss, image) -> False when the caller is gone
Progress = Callable[[int, float, torch.Tensor], bool]
Run = Callable[[dict[str, np.ndarray], dict, "Progress | None"], dict[str, np.ndarray]]


@dataclass(frozen=True)
class Param:
    """A typed request parameter with a default and bounds (numbers) or a set of choices (strings)."""

    name: str
    kind: type
    default: float | int | str
    low: float | int | None
    high: float | int | None
    help: str
    choices: tuple[str, ...] = ()

    def parse(self, value) -> float | int | str:
        if self.kind is str and not self.choices:  # free text: low and high bound its length
            if not isinstance(value, str) or not self.low <= len(value) <= self.high:
                raise InvalidArgument(f"parameter '{self.name}' must be a string of {self.low} to {self.high} "
                                      "characters")
            return value
        if self.choices:
            if str(value) not in self.choices:
                raise InvalidArgument(f"parameter '{self.name}' = {value!r} is not one of {list(self.choices)}")
            return str(value)
        if isinstance(value, bool) or (self.kind is int and isinstance(value, float) and not value.is_integer()):
            raise InvalidArgument(f"parameter '{self.name}' must be {self.kind.__name__}, got {value!r}")
        try:
            v = self.kind(value)
        except (TypeError, ValueError) as e:
            raise InvalidArgument(f"parameter '{self.name}' must be {self.kind.__name__}, got {value!r}") from e
        if not self.low <= v <= self.high:
            raise InvalidArgument(f"parameter '{self.name}' = {v} is out of range [{self.low}, {self.high}]")
        return v

    def spec(self) -> str:
        """The parameter as the model config lists it (clients and ``stylecast explain`` parse this)."""
        return param_text(self.kind, self.default, self.low, self.high, self.choices, self.help)


def choice(name: str, default: str, choices: tuple[str, ...], help: str) -> Param:
    return Param(name, str, default, None, None, help, choices)


@dataclass(frozen=True)
class Tensor:
    name: str
    dtype: int  # a model_config_pb2 TYPE_*
    dims: tuple[int, ...]
    optional: bool = False


def image(name: str = "image") -> Tensor:
    return Tensor(name, mc.TYPE_UINT8, (-1, -1, 3))


def text(name: str) -> Tensor:
    return Tensor(name, mc.TYPE_STRING, (1,))


def scalar(name: str, dtype: int = mc.TYPE_INT32) -> Tensor:
    return Tensor(name, dtype, (1,))


def _no_rule(params: dict) -> None:
    return None


def _nothing() -> None:
    return None


@dataclass(frozen=True)
class Spec:
    """A technique: what it takes and gives, its parameters, and the function that runs it.

    ``run(inputs, params, progress)`` gets the request's tensors and its checked parameters (every
    declared one, defaults filled in); ``progress`` is given to decoupled techniques only. ``rule`` checks
    across parameters before any work; ``answer_bytes`` bounds the answer's size before any work (None:
    small); ``load`` warms what ``run`` needs (networks, the gallery) when the model loads.
    """

    name: str
    description: str
    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]
    params: tuple[Param, ...]
    run: Run
    decoupled: bool = False
    rule: Callable[[dict], None] = _no_rule
    load: Callable[[], object] = _nothing
    answer_bytes: Callable[[dict[str, np.ndarray], list[str]], int | None] | None = None
    family: str = ""  # attribution, optimization or gallery: for listings

    def config(self) -> mc.ModelConfig:
        cfg = mc.ModelConfig(name=self.name, backend=BACKEND, max_batch_size=0)
        cfg.model_transaction_policy.decoupled = self.decoupled
        for t in self.inputs:
            cfg.input.add(name=t.name, data_type=t.dtype, dims=list(t.dims), optional=t.optional)
        for t in self.outputs:
            cfg.output.add(name=t.name, data_type=t.dtype, dims=list(t.dims))
        cfg.instance_group.add(count=1, kind=mc.ModelInstanceGroup.KIND_CPU)
        cfg.parameters[KIND_PARAMETER].string_value = TECHNIQUE_KIND
        cfg.parameters[DESCRIPTION_PARAMETER].string_value = self.description
        if self.family:
            cfg.parameters[FAMILY_PARAMETER].string_value = self.family
        for p in self.params:
            cfg.parameters[TECHNIQUE_PARAM_PREFIX + p.name].string_value = p.spec()
        return cfg

    def check(self, parameters: dict) -> dict:
        """Every declared parameter, parsed and bounded (defaults filled in); unknown names are refused."""
        known = {p.name: p for p in self.params}
        unknown = sorted(k for k in parameters if k not in known and k not in RESERVED)
        if unknown:
            raise InvalidArgument(f"unknown parameter(s) {unknown} for '{self.name}'; known: {sorted(known)}")
        params = {name: (p.parse(parameters[name]) if name in parameters else p.default)
                  for name, p in known.items()}
        self.rule(params)
        return params


class Slots:
    """How many optimizations may run at once, over all decoupled techniques of one server."""

    def __init__(self, limit: int = 1) -> None:
        self.limit = max(1, limit)
        self._sem = threading.Semaphore(self.limit)

    def acquire(self) -> threading.Semaphore:
        """Wait for a slot; a deadline that passes or a caller that goes away while waiting ends the request."""
        sem = self._sem
        while not sem.acquire(timeout=0.1):
            check_stop(f"waiting for an optimization slot; {self.limit} may run at once")
        return sem


def pixels(x: torch.Tensor) -> np.ndarray:
    """[1, 3, H, W] float 0..255 -> [H, W, 3] uint8."""
    return x[0].detach().clamp(0, 255).round().byte().permute(1, 2, 0).numpy()


class SpecBackend(Backend):
    """Serves one technique from its spec. Decoupled techniques take a slot from the server's
    :class:`Slots` and stream (step, loss, a preview every ``preview_every`` steps) through ``emit``."""

    platform = BACKEND

    def __init__(self, spec: Spec, slots: Slots | None = None) -> None:
        super().__init__(spec.config(), Path("."))
        self.spec = spec
        self.slots = slots or Slots()

    def load(self) -> None:
        self.spec.load()

    def check_parameters(self, parameters: dict) -> dict:
        return self.spec.check(parameters)

    def response_bytes(self, inputs: dict[str, np.ndarray], outputs: list[str]) -> int | None:
        return None if self.spec.answer_bytes is None else self.spec.answer_bytes(inputs, outputs)

    def infer(self, inputs: dict[str, np.ndarray], outputs: list[str], parameters: dict,
              emit=None) -> dict[str, np.ndarray]:
        if not self.spec.decoupled:
            result = self.spec.run(inputs, parameters, None)
        else:
            sem = self.slots.acquire()
            try:
                result = self.spec.run(inputs, parameters, self._progress(parameters, emit))
            finally:
                sem.release()
        return {k: result[k] for k in outputs if k in result}

    def _progress(self, parameters: dict, emit) -> Progress:
        every = parameters.get("preview_every", 10)

        def progress(step: int, loss: float, image: torch.Tensor) -> bool:
            check_stop(f"{self.spec.name} stopped at step {step}")
            if emit is None:
                return True
            msg = {"step": np.array([step], np.int32), "loss": np.array([loss], np.float32)}
            if step % every == 0:
                msg["image"] = pixels(image)
            if not emit(msg):  # the stream was cancelled after the check above: an error, not a partial result
                raise Cancelled(f"Cancelled: the caller went away ({self.spec.name} stopped at step {step})")
            return True

        return progress
