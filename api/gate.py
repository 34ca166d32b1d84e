"""Admission control and the batching model worker.

One worker runs the pipeline; requests that arrive while it is idle wait ``batch_window_s`` for
companions and are answered together (`Pipeline.ask_batch`: one embedding, reading and generation
batch), up to ``max_batch`` at a time. Requests that arrive while it works wait in a queue of
``queue_size`` and form the next batch; when the queue is full the next request is refused at once
with 429 and ``Retry-After`` instead of piling up. A request that cannot finish by its deadline gets
504 at once and its row of the batch is told to stop (within one decoding step); a client that
disconnects is treated the same way, and neither holds up the other rows. The event loop never blocks
on the model, so /healthz and /metrics answer instantly while the worker is saturated.

With ``workers`` above 1 (a Ray Serve ingress in front of that many answering replicas, `api.cluster`)
up to that many batches run at once, each formed the same way.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from api.errors import APIError
from qa.errors import Cancelled, DeadlineExceeded
from qa.memory import trim_heap
from qa.pipeline import Job, Pipeline
from qa.types import Answer


@dataclass(eq=False)
class _Pending:
    pipeline: Pipeline
    job: Job
    future: asyncio.Future
    started: bool = False
    abandoned: bool = False


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

    async def run(
        self,
        pipeline: Pipeline,
        question: str,
        top_k: int | None = None,
        history: Sequence[str] = (),
        max_new_tokens: int | None = None,
        *,
        is_disconnected: Callable[[], Awaitable[bool]] | None = None,
    ) -> Answer:
        """Answer in the next batch the worker runs, watching the deadline and the client."""
        gate = self.gate
        job = Job(question, top_k, tuple(history), max_new_tokens, self.cancel)
        pending = _Pending(pipeline, job, asyncio.get_running_loop().create_future())
        gate.submit(pending, self)
        try:
            while not pending.future.done():
                await asyncio.wait({pending.future}, timeout=0.05)
                if pending.future.done():
                    break
                if time.monotonic() > self.deadline:
                    self._give_up(pending)
                    if not pending.started:
                        raise DeadlineExceeded(f"no answer slot within the {gate.timeout_s:g} s deadline; retry later")
                    raise DeadlineExceeded(f"the answer took longer than the {gate.timeout_s:g} s deadline")
                if is_disconnected is not None and await is_disconnected():
                    self._give_up(pending)
                    raise Cancelled("the client disconnected")
        except asyncio.CancelledError:  # the response task was cancelled (e.g. a streaming client left)
            self._give_up(pending)
            raise
        return pending.future.result()

    def _give_up(self, pending: _Pending) -> None:
        """Stop this request's row (it leaves the queue, or stops within one decoding step)."""
        self.cancel.set()
        pending.abandoned = True
        self.gate.withdraw(pending, self)


class AnswerGate:
    def __init__(
        self,
        queue_size: int,
        timeout_s: float,
        on_depth: Callable[[int], None] = lambda n: None,
        *,
        batch_window_s: float = 0.0,
        max_batch: int = 1,
        on_batch: Callable[[int], None] = lambda n: None,
        workers: int = 1,
    ) -> None:
        self.queue_size = queue_size
        self.timeout_s = timeout_s
        self.batch_window_s = batch_window_s
        self.max_batch = max(1, max_batch)
        self.waiting = 0  # admitted requests not yet in a batch
        self.running = 0  # requests in the batches the workers are running
        self.on_depth = on_depth
        self.on_batch = on_batch
        self.workers = max(1, workers)
        self._pending: deque[tuple[_Pending, Ticket]] = deque()
        self._tasks: set[asyncio.Task] = set()
        # one thread a worker (the default executor has min(32, cores + 4))
        self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="qa-batch") if self.workers > 1 else None

    @property
    def depth(self) -> int:
        """Requests waiting for or held by the worker."""
        return self.waiting + self.running

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

    def submit(self, pending: _Pending, ticket: Ticket) -> None:
        self._pending.append((pending, ticket))
        self._tasks = {t for t in self._tasks if not t.done()}
        if len(self._tasks) < self.workers:  # a worker with nothing left to take simply stops
            self._tasks.add(asyncio.get_running_loop().create_task(self._work()))

    def withdraw(self, pending: _Pending, ticket: Ticket) -> None:
        """Take a request that has not started out of the queue (a started one stops by its cancel)."""
        if not pending.started:
            try:
                self._pending.remove((pending, ticket))
            except ValueError:
                pass
            ticket.leave_queue()

    async def _work(self) -> None:
        """The model worker: batches of waiting requests, one batch at a time, until none wait."""
        loop = asyncio.get_running_loop()
        while True:
            await self._run_batches(loop)
            # The queue ran empty: give the batches' freed buffers back to the OS, then stop unless a
            # request arrived meanwhile (submit() starts no more than ``workers`` workers).
            await loop.run_in_executor(None, trim_heap)
            if not self._pending:
                break

    async def _run_batches(self, loop: asyncio.AbstractEventLoop) -> None:
        idle = True
        while self._pending:
            if idle and self.batch_window_s > 0 and len(self._pending) < self.max_batch:
                await asyncio.sleep(self.batch_window_s)  # let requests arriving together share a batch
            idle = False
            if not self._pending:
                break
            pipeline = self._pending[0][0].pipeline
            batch: list[_Pending] = []
            for item in list(self._pending):
                if len(batch) == self.max_batch:
                    break
                if item[0].pipeline is pipeline:  # documents changed in between: that one waits
                    self._pending.remove(item)
                    item[0].started = True
                    item[1].leave_queue()
                    batch.append(item[0])
            self.running += len(batch)
            self.on_batch(len(batch))
            self.on_depth(self.depth)
            try:
                results = await loop.run_in_executor(self._executor, pipeline.ask_batch, [p.job for p in batch])
            except Exception as exc:  # noqa: BLE001 - the worker itself failed: every row reports it
                results = [exc] * len(batch)
            finally:
                self.running -= len(batch)
                self.on_depth(self.depth)
            for p, result in zip(batch, results, strict=True):
                if p.abandoned or p.future.done():
                    continue
                if isinstance(result, BaseException):
                    p.future.set_exception(result)
                else:
                    p.future.set_result(result)
