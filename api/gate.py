"""Admission control: one model worker, a bounded wait queue, a deadline per request.

Requests beyond the worker wait in a queue of ``queue_size``; when it is full the next request is
refused at once with 429 and ``Retry-After`` instead of piling up. A request that cannot finish by its
deadline gets 504 and its generation is told to stop (it stops within one decoding step, then frees
the worker). A client that disconnects is treated the same way. The event loop never blocks on the
model, so /healthz and /metrics answer instantly while generation is saturated.
"""

from __future__ import annotations

import asyncio
import functools
import threading
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from api.errors import APIError
from qa.errors import Cancelled, DeadlineExceeded

T = TypeVar("T")


class Ticket:
    """A place in the queue, taken at admission (so a full queue is refused before any work)."""

    def __init__(self, gate: AnswerGate) -> None:
        self.gate = gate
        self.deadline = time.monotonic() + gate.timeout_s
        self.cancel = threading.Event()
        self._released = False

    def leave_queue(self) -> None:
        if not self._released:
            self._released = True
            self.gate.waiting -= 1
            self.gate.on_depth(self.gate.depth)

    async def run(self, fn: Callable[..., T], *args, is_disconnected: Callable[[], Awaitable[bool]] | None = None) -> T:  # noqa: ANN002
        """Wait for the worker, then run ``fn(*args, cancel=event)`` in a thread, watching the deadline."""
        gate = self.gate
        try:
            remaining = self.deadline - time.monotonic()
            try:
                await asyncio.wait_for(gate.worker.acquire(), timeout=max(remaining, 0.001))
            except TimeoutError:
                raise DeadlineExceeded(
                    f"no answer slot within the {gate.timeout_s:g} s deadline; retry later"
                ) from None
        finally:
            self.leave_queue()
        gate.busy = True
        gate.on_depth(gate.depth)
        loop = asyncio.get_running_loop()
        try:
            future = loop.run_in_executor(None, functools.partial(fn, *args, cancel=self.cancel))
        except BaseException:
            gate.finish()
            raise
        # subtle: the worker is freed when the *thread* ends, not when this coroutine does; a cancelled
        # request (client gone) must not let a second generation start beside the one still stopping.
        future.add_done_callback(lambda _: gate.finish())
        reason = ""
        try:
            while True:
                done, _ = await asyncio.wait({future}, timeout=0.05)
                if done:
                    break
                if not reason and time.monotonic() > self.deadline:
                    reason = "deadline"
                    self.cancel.set()
                if not reason and is_disconnected is not None and await is_disconnected():
                    reason = "disconnect"
                    self.cancel.set()
        except asyncio.CancelledError:  # the response task was cancelled (e.g. a streaming client left)
            self.cancel.set()
            raise
        try:
            result = future.result()
        except Cancelled:
            if reason == "deadline":
                raise DeadlineExceeded(f"the answer took longer than the {gate.timeout_s:g} s deadline") from None
            raise
        if reason == "deadline":
            raise DeadlineExceeded(f"the answer took longer than the {gate.timeout_s:g} s deadline")
        return result


class AnswerGate:
    def __init__(self, queue_size: int, timeout_s: float, on_depth: Callable[[int], None] = lambda n: None) -> None:
        self.queue_size = queue_size
        self.timeout_s = timeout_s
        self.worker = asyncio.Semaphore(1)
        self.waiting = 0
        self.busy = False
        self.on_depth = on_depth

    def finish(self) -> None:
        """Free the model worker (called when a generation thread ends)."""
        self.busy = False
        self.worker.release()
        self.on_depth(self.depth)

    @property
    def depth(self) -> int:
        """Requests waiting for or holding the worker."""
        return self.waiting + int(self.busy)

    def check_capacity(self) -> None:
        """429 at once when ``queue_size`` requests are already waiting."""
        if self.waiting >= self.queue_size:
            raise APIError(
                429,
                "rate_limit_exceeded",
                f"the answer queue is full ({self.queue_size} waiting); retry shortly",
                code="queue_full",
                headers={"Retry-After": "2"},
            )

    def admit(self, *, checked: bool = False) -> Ticket:
        """A ticket, or 429 when the queue is full (``checked``: the caller has just checked capacity)."""
        if not checked:
            self.check_capacity()
        self.waiting += 1
        self.on_depth(self.depth)
        return Ticket(self)
