"""Micro-batching and admission control for the server.

Concurrent requests put images on one queue; a single worker takes up to ``max_batch`` of them
and runs them in one ONNX Runtime call on a dedicated thread, so the event loop never blocks. It
waits at most ``max_wait`` after the first image for company, and only while more images are on
their way (still decoding): a lone request is never held back for a batch that cannot form.
:class:`Admission` bounds the images in the pipeline (decoding or waiting for the model): beyond
it, requests are refused at once with ``429`` and a ``Retry-After`` estimated from the recent
per-image service time.

Containment: every image carries a deadline and is dropped from the queue once it has passed
(its request answers 503, no model time is spent on it); an image whose request went away
(its future cancelled) is skipped; a model call that fails is retried image by image, so only
the image that makes ONNX Runtime fail gets ``inference_failed`` and the rest of the batch is
served; the worker survives any exception, and :meth:`MicroBatcher.health` reports a call that
has run longer than ``stall_s`` or a worker that stopped, for ``/readyz``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import math
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from model.imaging import ImageError
from model.logs import log_event
from serving.predictor import RawOutput

log = logging.getLogger(__name__)

BatchObserver = Callable[[int, float], None]
"""Called after each model call with ``(batch_size, seconds)``."""


class Overloaded(Exception):
    """The queue is full; ``retry_after`` is a whole number of seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"The server is at capacity; retry in {retry_after} s.")
        self.retry_after = retry_after


class Closed(Exception):
    """The batcher is shutting down and takes no new images."""


class DeadlineExceeded(Exception):
    """An image's deadline passed before the model could run it."""


class InferenceFailed(ImageError):
    """ONNX Runtime failed on this image (alone, after its batch failed); the others were served."""

    code = "inference_failed"


class DaemonThread:
    """One daemon worker thread running submitted calls in order.

    Unlike a ``ThreadPoolExecutor`` thread it is not joined at interpreter exit, so a model call
    that never returns (a hung graph) cannot keep a stopping server alive past its drain bound.
    """

    def __init__(self, name: str) -> None:
        self._calls: queue.SimpleQueue[
            tuple[concurrent.futures.Future[Any], Callable[..., Any], tuple] | None
        ]
        self._calls = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[..., Any], *args: Any) -> concurrent.futures.Future[Any]:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._calls.put((future, fn, args))
        return future

    def shutdown(self) -> None:
        """Stop after the calls already submitted (does not wait)."""
        self._calls.put(None)

    def _loop(self) -> None:
        while (call := self._calls.get()) is not None:
            future, fn, args = call
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn(*args))
            except BaseException as exc:  # handed to the waiter, whatever it is
                future.set_exception(exc)


class Admission:
    """Counts images in the pipeline and refuses those beyond ``capacity``.

    Only the event loop touches it, so no lock is needed.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.depth = 0
        self.seconds_per_image = 0.05  # EWMA of end-to-end time per image, seeded conservatively

    def acquire(self, n: int) -> None:
        """Admit ``n`` images or raise :class:`Overloaded`."""
        if self.depth + n > self.capacity:
            raise Overloaded(self.retry_after())
        self.depth += n

    def release(self, n: int) -> None:
        self.depth = max(0, self.depth - n)

    def observe(self, seconds_per_image: float) -> None:
        self.seconds_per_image += 0.2 * (seconds_per_image - self.seconds_per_image)

    def retry_after(self) -> int:
        """Seconds until the queue has likely drained (1 to 60)."""
        return int(min(60, max(1, math.ceil(self.depth * self.seconds_per_image))))


@dataclass
class _Job:
    pixels: np.ndarray
    future: asyncio.Future[RawOutput]
    deadline: float  # loop time; inf for none


class MicroBatcher:
    """Groups concurrent images into ONNX Runtime calls.

    Args:
        infer: ``(B, H, W, 3) uint8 -> [RawOutput] * B``; run on a single dedicated thread.
        max_batch: Most images per call.
        max_wait_s: How long the first image waits for others.
        observer: Metrics hook, called with ``(batch_size, seconds)`` after each call.
        pending: How many more images are on their way (decoding); the batch waits for company
            only while this is above zero. ``None``: always wait up to ``max_wait_s``.
        stall_s: A model call running longer than this makes :meth:`health` report ``stuck``.
        on_event: Metrics hook, called with ``"deadline"``, ``"cancelled"`` or
            ``"inference_failed"`` per image so affected.
    """

    def __init__(
        self,
        infer: Callable[[np.ndarray], list[RawOutput]],
        *,
        max_batch: int,
        max_wait_s: float,
        observer: BatchObserver | None = None,
        pending: Callable[[], int] | None = None,
        stall_s: float = 30.0,
        on_event: Callable[[str], None] = lambda event: None,
    ) -> None:
        self.infer = infer
        self.pending = pending
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.observer = observer
        self.stall_s = stall_s
        self.on_event = on_event
        self.queue: asyncio.Queue[_Job | None] = asyncio.Queue()
        self.thread = DaemonThread("ort")
        self.closed = False
        self.busy_since: float | None = None  # time.monotonic() when the running model call began
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the worker on the running loop."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name="micro-batcher")

    @property
    def waiting(self) -> int:
        """Images queued for the model."""
        return self.queue.qsize()

    def health(self) -> str | None:
        """``None`` when working; ``"stuck"`` (a model call past ``stall_s``) or ``"stopped"``
        (the worker ended without being closed) otherwise."""
        if self._task is not None and self._task.done() and not self.closed:
            return "stopped"
        busy = self.busy_since
        if busy is not None and time.monotonic() - busy > self.stall_s:
            return "stuck"
        return None

    async def submit(self, pixels: np.ndarray, *, deadline: float | None = None) -> RawOutput:
        """Queue one ``(H, W, 3)`` image and wait for its outputs, at most until ``deadline``.

        Args:
            pixels: The model input.
            deadline: ``loop.time()`` after which the image is dropped; ``None`` waits as long as
                it takes.

        Raises:
            Closed: the batcher takes no more images.
            DeadlineExceeded: the deadline passed first (the image is skipped, never computed).
            InferenceFailed: the model failed on this image.
        """
        if self.closed or self.health() == "stopped":
            raise Closed("The model is being replaced or the server is stopping.")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[RawOutput] = loop.create_future()
        until = math.inf if deadline is None else deadline
        self.queue.put_nowait(_Job(pixels, future, until))
        if deadline is None:
            return await future
        try:
            # on timeout wait_for cancels the future, and a cancelled job is skipped
            return await asyncio.wait_for(future, max(0.0, until - loop.time()))
        except TimeoutError:
            raise DeadlineExceeded("The image was not scored before the request's deadline.") from None

    async def close(self, timeout: float | None = None) -> bool:
        """Finish every queued image, then stop the worker and its thread.

        Args:
            timeout: Longest wait for the queue to drain; then the images still waiting fail
                with :class:`Closed` and a model call still running is left to its daemon thread.

        Returns:
            Whether the queue drained in time.
        """
        self.closed = True
        drained = True
        if self._task is not None and not self._task.done():
            self.queue.put_nowait(None)
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout)
            except TimeoutError:
                drained = False
                self._task.cancel()
                self._fail_waiting(Closed("The server stopped before this image was scored."))
        self.thread.shutdown()
        return drained

    def _fail_waiting(self, exc: Exception) -> None:
        while not self.queue.empty():
            job = self.queue.get_nowait()
            if job is not None and not job.future.done():
                job.future.set_exception(exc)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        stopping = False
        while not stopping:
            first = await self.queue.get()
            if first is None:
                break
            jobs = [first]
            deadline = loop.time() + self.max_wait_s
            while len(jobs) < self.max_batch:
                try:
                    job = self.queue.get_nowait()
                except asyncio.QueueEmpty:
                    remaining = deadline - loop.time()
                    if remaining <= 0 or (self.pending is not None and self.pending() == 0):
                        break
                    try:
                        job = await asyncio.wait_for(self.queue.get(), remaining)
                    except TimeoutError:
                        break
                if job is None:
                    stopping = True
                    break
                jobs.append(job)
            try:
                await self._run_batch(loop, jobs)
            except Exception as exc:  # never let the worker die: every waiter learns what happened
                log_event(log, "batch_failed", logging.ERROR, error=f"{type(exc).__name__}: {exc}")
                for j in jobs:
                    if not j.future.done():
                        j.future.set_exception(
                            InferenceFailed(f"The model call failed ({type(exc).__name__}).")
                        )

    def _live(self, loop: asyncio.AbstractEventLoop, jobs: list[_Job]) -> list[_Job]:
        """Jobs still worth computing: neither cancelled (client gone) nor past their deadline."""
        now = loop.time()
        live = []
        for j in jobs:
            if j.future.done():  # cancelled: the request went away or stopped waiting
                self.on_event("cancelled")
            elif j.deadline < now:
                self.on_event("deadline")
                j.future.set_exception(DeadlineExceeded("The image waited past its deadline."))
            else:
                live.append(j)
        return live

    async def _call(self, pixels: np.ndarray) -> list[RawOutput]:
        self.busy_since = time.monotonic()
        try:
            outputs = await asyncio.wrap_future(self.thread.submit(self.infer, pixels))
        finally:
            self.busy_since = None
        if len(outputs) != len(pixels):
            raise RuntimeError(f"the model returned {len(outputs)} results for {len(pixels)} images")
        return outputs

    async def _run_batch(self, loop: asyncio.AbstractEventLoop, jobs: list[_Job]) -> None:
        live = self._live(loop, jobs)
        if not live:
            return
        pixels = np.stack([j.pixels for j in live])  # (B, H, W, 3)
        t = time.perf_counter()
        try:
            outputs = await self._call(pixels)
        except Exception as exc:
            if len(live) > 1:  # find the image that fails: the others must not pay for it
                log_event(log, "batch_failed_retrying_alone", logging.WARNING, size=len(live), error=str(exc))
                for j in live:
                    await self._run_batch(loop, [j])
                return
            self.on_event("inference_failed")
            log_event(log, "inference_failed", logging.ERROR, error=f"{type(exc).__name__}: {exc}")
            if not live[0].future.done():
                live[0].future.set_exception(
                    InferenceFailed(
                        "The model could not process this photo (ONNX Runtime error); "
                        "the other photos were not affected."
                    )
                )
            return
        if self.observer is not None:
            self.observer(len(live), time.perf_counter() - t)
        for j, out in zip(live, outputs, strict=True):
            if not j.future.done():
                j.future.set_result(out)
