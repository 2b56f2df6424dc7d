"""A loaded model version: its backend, scheduler, request validation and statistics."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import numpy as np
from tritonclient.grpc import model_config_pb2 as mc

from .backend import Backend
from .datatypes import datatype_of
from .errors import InvalidArgument
from .scheduler import BatchPolicy, Job, Scheduler
from .tensors import InferRequest, np_to_datatype

DEFAULT_MAX_QUEUE = 256


@dataclass
class Counter:
    count: int = 0
    ns: int = 0

    def add(self, ns: int, n: int = 1) -> None:
        self.count += n
        self.ns += ns


@dataclass
class BatchCounters:
    """One batch size's executions, as Triton's batch_stats report them."""

    compute_input: Counter = field(default_factory=Counter)
    compute_infer: Counter = field(default_factory=Counter)
    compute_output: Counter = field(default_factory=Counter)


@dataclass
class Stats:
    """What ModelStatistics and the Prometheus metrics report (both read this one record)."""

    success: Counter = field(default_factory=Counter)
    fail: Counter = field(default_factory=Counter)
    queue: Counter = field(default_factory=Counter)
    compute_input: Counter = field(default_factory=Counter)
    compute_infer: Counter = field(default_factory=Counter)
    compute_output: Counter = field(default_factory=Counter)
    inference_count: int = 0
    execution_count: int = 0
    last_inference_ms: int = 0
    batch: dict[int, BatchCounters] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


def _batch_policy(cfg: mc.ModelConfig) -> BatchPolicy:
    if cfg.max_batch_size > 0 and cfg.HasField("dynamic_batching"):
        db = cfg.dynamic_batching
        return BatchPolicy(True, cfg.max_batch_size, db.max_queue_delay_microseconds / 1e6,
                           tuple(db.preferred_batch_size))
    return BatchPolicy(False, max(cfg.max_batch_size, 1))


class ModelVersion:
    """One served version. ``infer`` validates, queues and waits; ``close`` drains accepted work."""

    def __init__(self, backend: Backend, version: int) -> None:
        self.backend = backend
        self.version = version
        self.stats = Stats()
        cfg = backend.config
        self.config = cfg
        workers = sum(g.count or 1 for g in cfg.instance_group) or 1
        qp = cfg.dynamic_batching.default_queue_policy if cfg.HasField("dynamic_batching") else None
        max_queue = qp.max_queue_size if qp is not None and qp.max_queue_size > 0 else DEFAULT_MAX_QUEUE
        self.scheduler = Scheduler(f"{cfg.name}:{version}", backend.infer, workers, _batch_policy(cfg),
                                   max_queue, self._record)
        self._inputs = {t.name: t for t in cfg.input}
        self._outputs = {t.name: t for t in cfg.output}

    @property
    def name(self) -> str:
        return self.config.name

    def validate(self, req: InferRequest) -> int:
        """Check a request against the config with Triton's error texts; returns its batch size."""
        cfg, name = self.config, self.config.name
        missing = [n for n, t in self._inputs.items() if n not in req.inputs and not t.optional]
        if missing:
            raise InvalidArgument(
                f"expected {len(self._inputs)} inputs but got {len(req.inputs)} inputs for model '{name}'. "
                f"Got input(s) {sorted(req.inputs)}, but missing required input(s) {missing}. "
                "Please provide all required input(s).")
        batch = None
        for n, arr in req.inputs.items():
            spec = self._inputs.get(n)
            if spec is None:
                raise InvalidArgument(f"unexpected inference input '{n}' for model '{name}'")
            want = datatype_of(spec.data_type)
            got = np_to_datatype(arr)
            if got != want:
                raise InvalidArgument(
                    f"inference input '{n}' data-type is '{got}', but model '{name}' expects '{want}'")
            dims = list(spec.reshape.shape) if spec.HasField("reshape") else list(spec.dims)
            shape = list(arr.shape)
            full = ([-1] + dims) if cfg.max_batch_size > 0 else dims
            if len(shape) != len(full) or any(d != -1 and d != s for d, s in zip(full, shape)):
                raise InvalidArgument(
                    f"unexpected shape for input '{n}' for model '{name}'. Expected {_dims(full)}, got {_dims(shape)}")
            if arr.size == 0:
                raise InvalidArgument(f"input '{n}' for model '{name}' has no elements (shape {shape})")
            self._check_values(n, arr)
            if cfg.max_batch_size > 0:
                if batch is not None and shape[0] != batch:
                    raise InvalidArgument(f"input '{n}' batch size does not match other inputs for '{name}'")
                batch = shape[0]
        if cfg.max_batch_size > 0 and batch is not None and batch > cfg.max_batch_size:
            raise InvalidArgument(
                f"inference request batch-size must be <= {cfg.max_batch_size} for '{name}'")
        for o in req.outputs:
            if o.name not in self._outputs:
                raise InvalidArgument(f"unexpected inference output '{o.name}' for model '{name}'")
        self.backend.check_inputs(req.inputs)
        return batch or 1

    def _check_values(self, n: str, arr: np.ndarray) -> None:
        """Values no model can use: non-finite floats anywhere (the backend checks its own, check_inputs)."""
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            raise InvalidArgument(f"input '{n}' for model '{self.name}' holds NaN or infinite values")

    @property
    def decoupled(self) -> bool:
        """Sends several responses per request (progress, then the result) over ModelStreamInfer."""
        return self.config.model_transaction_policy.decoupled

    def submit(self, req: InferRequest, emit=None):
        rows = self.validate(req)
        outputs = [o.name for o in req.outputs] or list(self._outputs)
        params = self.backend.check_parameters(req.parameters)
        return self.scheduler.submit(req.inputs, outputs, rows, req.deadline, params, emit, req.cancelled,
                                     req.decode_ns)

    def _record(self, jobs: list[Job], err: BaseException | None) -> None:
        now_ms = int(time.time() * 1000)
        with self.stats.lock:
            s = self.stats
            for j in jobs:
                total = int((time.monotonic() - j.enqueued) * 1e9)
                if err is None:
                    s.success.add(total)
                    s.queue.add(j.queue_ns)
                    s.compute_input.add(j.input_ns)
                    s.compute_infer.add(j.compute_ns)
                    s.compute_output.add(j.output_ns)
                    s.inference_count += j.rows
                else:
                    s.fail.add(total)
            if err is None and jobs:
                s.execution_count += 1
                b = s.batch.setdefault(jobs[0].batch_size, BatchCounters())
                b.compute_input.add(max(j.input_ns for j in jobs))
                b.compute_infer.add(jobs[0].compute_ns)
                b.compute_output.add(sum(j.output_ns for j in jobs))
            s.last_inference_ms = now_ms

    def record_failure(self, ns: int) -> None:
        with self.stats.lock:
            self.stats.fail.add(ns)

    def close(self, timeout: float = 60.0) -> None:
        self.scheduler.close(timeout)
        self.backend.unload()


def _dims(shape: list[int]) -> str:
    """Shapes written as Triton writes them in its messages: [-1,16]."""
    return "[" + ",".join(str(d) for d in shape) + "]"
