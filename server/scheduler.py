"""Request scheduling for one model version: a bounded queue, worker threads, optional dynamic batching.

With dynamic batching, requests whose inputs have the same shapes (apart from the batch dimension)
and datatypes are concatenated into one execution, up to ``max_batch_size`` rows or a preferred
batch size, waiting at most ``max_queue_delay_microseconds`` for company; each caller gets back
exactly its own rows and only the outputs it asked for.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

from .errors import Cancelled, DeadlineExceeded, Unavailable

log = logging.getLogger(__name__)

# run(inputs, outputs, parameters, emit): ``emit`` is None, or (for decoupled models) a callback taking
# partial outputs; it returns False when the caller has gone, so the work can stop.
Emit = Callable[[dict[str, np.ndarray]], bool]
Runner = Callable[[dict[str, np.ndarray], list[str], dict, Emit | None], dict[str, np.ndarray]]

_current = threading.local()


def time_left() -> float | None:
    """Seconds until the deadline of the request this worker thread is executing (None: no deadline)."""
    deadline = getattr(_current, "deadline", None)
    return None if deadline is None else deadline - time.monotonic()


def check_stop(where: str = "") -> None:
    """Raise DeadlineExceeded or Cancelled when the request this worker thread executes has passed its
    deadline or every caller of its batch has gone. Long-running backends call it between units of work
    (each optimization step, each occlusion batch), so abandoned work stops instead of holding the worker."""
    suffix = f" ({where})" if where else ""
    left = time_left()
    if left is not None and left <= 0:
        raise DeadlineExceeded(f"Deadline Exceeded: the request's deadline passed while it ran{suffix}")
    events = getattr(_current, "cancelled", None)
    if events and all(e.is_set() for e in events):
        raise Cancelled(f"Cancelled: the caller went away{suffix}")


@dataclass(eq=False)  # identity, not array comparison, when removed from the queue
class Job:
    inputs: dict[str, np.ndarray]
    outputs: list[str]
    rows: int
    deadline: float | None
    parameters: dict = field(default_factory=dict)
    emit: Emit | None = None
    cancelled: threading.Event | None = None  # set when the caller cancels or goes away
    future: Future = field(default_factory=Future)
    enqueued: float = field(default_factory=time.monotonic)
    signature: tuple = ()
    input_ns: int = 0  # decoding the request's tensors (before queueing) and batching them
    queue_ns: int = 0
    compute_ns: int = 0
    output_ns: int = 0  # slicing this request's rows and encoding its response
    batch_size: int = 0


def signature(inputs: dict[str, np.ndarray], parameters: dict | None = None) -> tuple:
    """Requests batch together only when shapes (past the batch dimension), dtypes and parameters agree."""
    shapes = tuple(sorted((k, v.dtype.str, v.shape[1:]) for k, v in inputs.items()))
    return shapes + tuple(sorted((parameters or {}).items()))


@dataclass
class BatchPolicy:
    enabled: bool
    max_batch_size: int
    max_delay_s: float = 0.0
    preferred: tuple[int, ...] = ()


class Scheduler:
    """Feeds queued jobs to ``workers`` threads calling ``run``; ``on_done`` records statistics."""

    def __init__(self, name: str, run: Runner, workers: int, policy: BatchPolicy, max_queue: int,
                 on_done: Callable[[list[Job], BaseException | None], None]) -> None:
        self.name = name
        self._run = run
        self._policy = policy
        self._max_queue = max_queue
        self._on_done = on_done
        self._pending: deque[Job] = deque()
        self._cv = threading.Condition()
        self._closing = False
        self._threads = [threading.Thread(target=self._worker, name=f"{name}-worker{i}", daemon=True)
                         for i in range(max(1, workers))]
        for t in self._threads:
            t.start()

    def submit(self, inputs: dict[str, np.ndarray], outputs: list[str], rows: int,
               deadline: float | None, parameters: dict | None = None, emit: Emit | None = None,
               cancelled: threading.Event | None = None, input_ns: int = 0) -> Future:
        params = dict(parameters or {})
        sig = signature(inputs, params) + ((id(emit),) if emit is not None else ())  # streams never batch
        job = Job(inputs, outputs, rows, deadline, params, emit, cancelled, signature=sig, input_ns=input_ns)
        with self._cv:
            if self._closing:
                raise Unavailable(f"Request for unknown model: '{self.name}' is being unloaded")
            if len(self._pending) >= self._max_queue:
                raise Unavailable(f"Exceeds maximum queue size: model '{self.name}' has {self._max_queue} "
                                  "requests queued; retry later")
            self._pending.append(job)
            self._cv.notify()
        return job.future

    def _take(self) -> list[Job] | None:
        """Block for the next batch of compatible jobs (or None when closing and drained)."""
        p = self._policy
        with self._cv:
            while not self._pending:
                if self._closing:
                    return None
                self._cv.wait()
            first = self._pending.popleft()
            batch = [first]
            if not p.enabled:
                return batch
            limit = p.max_batch_size
            target = max(p.preferred) if p.preferred else limit
            wait_until = first.enqueued + p.max_delay_s
            while True:
                rows = sum(j.rows for j in batch)
                for j in list(self._pending):
                    if j.signature == first.signature and rows + j.rows <= limit:
                        self._pending.remove(j)
                        batch.append(j)
                        rows += j.rows
                if rows >= target or rows in p.preferred or self._closing:
                    break
                remaining = wait_until - time.monotonic()
                if remaining <= 0:
                    break
                self._cv.wait(remaining)
            return batch

    def _worker(self) -> None:
        while True:
            batch = self._take()
            if batch is None:
                return
            self._execute(batch)

    def _execute(self, batch: list[Job]) -> None:
        now = time.monotonic()
        live = []
        for j in batch:
            j.queue_ns = int((now - j.enqueued) * 1e9)
            err: Exception | None = None
            if j.deadline is not None and now > j.deadline:
                err = DeadlineExceeded("Deadline Exceeded: request timed out while queued")
            elif j.cancelled is not None and j.cancelled.is_set():
                err = Cancelled("Cancelled: the caller went away while the request was queued")
            if err is not None:
                j.future.set_exception(err)
                self._on_done([j], err)
            else:
                live.append(j)
        if not live:
            return
        outputs = sorted({o for j in live for o in j.outputs})
        t_in = time.perf_counter_ns()
        inputs = live[0].inputs if len(live) == 1 else {
            k: np.concatenate([j.inputs[k] for j in live], axis=0) for k in live[0].inputs}
        t0 = time.perf_counter_ns()
        for j in live:
            j.input_ns += t0 - t_in
        deadlines = [j.deadline for j in live if j.deadline is not None]
        _current.deadline = max(deadlines) if len(deadlines) == len(live) else None
        events = [j.cancelled for j in live]
        _current.cancelled = events if all(e is not None for e in events) else None
        try:
            result = self._run(inputs, outputs, live[0].parameters, live[0].emit)
        except BaseException as e:  # noqa: BLE001 - every caller must hear of it
            for j in live:
                j.future.set_exception(e)
            self._on_done(live, e)
            return
        finally:
            _current.deadline = _current.cancelled = None
        compute = time.perf_counter_ns() - t0
        start = 0
        for j in live:
            t_out = time.perf_counter_ns()
            j.compute_ns, j.batch_size = compute, sum(x.rows for x in live)
            if len(live) == 1:
                mine = {o: result[o] for o in j.outputs if o in result}
            else:
                mine = {o: result[o][start:start + j.rows] for o in j.outputs if o in result}
            start += j.rows
            j.future.set_result(mine)  # runs the data plane's callback, which encodes the response
            j.output_ns = time.perf_counter_ns() - t_out
        self._on_done(live, None)

    def close(self, timeout: float = 60.0) -> None:
        """Stop accepting, finish every accepted job, then stop the workers."""
        with self._cv:
            self._closing = True
            self._cv.notify_all()
        end = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, end - time.monotonic()))
