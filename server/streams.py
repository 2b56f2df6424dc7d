"""The one stream pump: requests in, their responses out, for every transport.

A stream (gRPC's ModelStreamInfer, HTTP's generate and generate_stream) submits requests as they arrive, so
stream frames pipeline and can share dynamic batches; its responses come out in request order, a decoupled
model's progress responses before its final one, and an error answers its own request only. Worker threads
push; the transport reads from an :class:`Outbox`, either blocking (gRPC's handler thread) or awaiting on an
asyncio loop (HTTP), so a stream that nobody reads holds no thread. A cancel signal (the caller went away,
or the server stops) stops the queued and running work. The server caps the streams open at once
(:class:`StreamLimit`): a refused one gets UNAVAILABLE / 503.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future

from .errors import Unavailable

log = logging.getLogger(__name__)

END = object()  # the outbox's last item


class Outbox:
    """A FIFO from worker threads to one reader; the reader may wait on a thread or on an asyncio loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._items: deque = deque()
        self._ready = threading.Condition()
        self._loop = loop
        self._wakeup = asyncio.Event() if loop is not None else None

    def put(self, item) -> None:
        with self._ready:
            self._items.append(item)
            self._ready.notify()
        if self._loop is not None:
            try:
                self._loop.call_soon_threadsafe(self._wakeup.set)
            except RuntimeError:  # the loop has closed: nobody reads any more
                pass

    def peek(self):
        """The next item without taking it, or None."""
        with self._ready:
            return self._items[0] if self._items else None

    def get(self):
        with self._ready:
            while not self._items:
                self._ready.wait()
            return self._items.popleft()

    async def aget(self):
        while True:
            self._wakeup.clear()
            with self._ready:
                if self._items:
                    return self._items.popleft()
            await self._wakeup.wait()


class _Slot:
    """One request's answers, held until every earlier request of the stream has been answered."""

    __slots__ = ("items", "done")

    def __init__(self) -> None:
        self.items: list = []
        self.done = False


class StreamPump:
    """Submits a stream's requests to ``submit(request, emit)`` (which returns the final response's future)
    and delivers responses and errors to ``outbox`` in request order, then :data:`END`."""

    def __init__(self, submit: Callable, outbox: Outbox, cancelled: threading.Event,
                 max_in_flight: int = 64) -> None:
        self._submit, self.outbox, self.cancelled = submit, outbox, cancelled
        self._order: deque[_Slot] = deque()
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(max_in_flight)
        self._input_done = False

    def open(self) -> bool:
        return not self.cancelled.is_set()

    def submit(self, request) -> None:
        """Queue one request (blocks while ``max_in_flight`` of this stream's requests are outstanding)."""
        self._slots.acquire()
        slot = _Slot()
        with self._lock:
            self._order.append(slot)

        def emit(response) -> bool:
            self._push(slot, response)
            return self.open()

        try:
            future: Future = self._submit(request, emit)
        except Exception as e:  # noqa: BLE001 - a bad request is answered in order; the stream goes on
            self._push(slot, e, final=True)
            return
        future.add_done_callback(lambda f: self._push(slot, _outcome(f), final=True))

    def end_input(self) -> None:
        with self._lock:
            self._input_done = True
        self._flush()

    def run(self, requests: Iterable) -> None:
        """Submit every request of an iterator (gRPC's request stream), then end the input."""
        try:
            for request in requests:
                if not self.open():
                    break
                self.submit(request)
        except Exception as e:  # noqa: BLE001 - the client went away or cancelled its stream
            log.debug("stream input stopped: %s", e)
        finally:
            self.end_input()

    def _push(self, slot: _Slot, item, final: bool = False) -> None:
        with self._lock:
            slot.items.append(item)
            slot.done = slot.done or final
        self._flush()

    def _flush(self) -> None:
        with self._lock:
            out = []
            while self._order:
                head = self._order[0]
                out += head.items
                head.items = []
                if not head.done:
                    break
                self._order.popleft()
                self._slots.release()
            end = self._input_done and not self._order
            if end:
                self._input_done = False  # END once
            for item in out:  # under the lock, so two flushing threads cannot interleave their items
                self.outbox.put(item)
            if end:
                self.outbox.put(END)


def _outcome(future: Future):
    try:
        return future.result()
    except BaseException as e:  # noqa: BLE001 - delivered as that request's answer
        return e


class StreamLimit:
    """At most ``limit`` streams open at once across every transport; the next one is refused at once."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._free = threading.BoundedSemaphore(limit)

    def acquire(self) -> None:
        if not self._free.acquire(blocking=False):
            raise Unavailable(f"Server is busy: {self.limit} streams are open, the most this server takes at once "
                              "(--max-streams); retry later")

    def release(self) -> None:
        self._free.release()
