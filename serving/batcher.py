"""Micro-batching and admission control for the server.

Concurrent requests put images on one queue; a single worker takes up to ``max_batch`` of them
and runs them in one ONNX Runtime call on a dedicated thread, so the event loop never blocks. It
waits at most ``max_wait`` after the first image for company, and only while more images are on
their way (still decoding): a lone request is never held back for a batch that cannot form. :class:`Admission` bounds the images in the
pipeline (decoding or waiting for the model): beyond it, requests are refused at once with
``429`` and a ``Retry-After`` estimated from the recent per-image service time.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from serving.predictor import RawOutput

BatchObserver = Callable[[int, float], None]
"""Called after each model call with ``(batch_size, seconds)``."""


class Overloaded(Exception):
    """The queue is full; ``retry_after`` is a whole number of seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"The server is at capacity; retry in {retry_after} s.")
        self.retry_after = retry_after


class Closed(Exception):
    """The batcher is shutting down and takes no new images."""


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


class MicroBatcher:
    """Groups concurrent images into ONNX Runtime calls.

    Args:
        infer: ``(B, H, W, 3) uint8 -> [RawOutput] * B``; run on a single dedicated thread.
        max_batch: Most images per call.
        max_wait_s: How long the first image waits for others.
        observer: Metrics hook, called with ``(batch_size, seconds)`` after each call.
        pending: How many more images are on their way (decoding); the batch waits for company
            only while this is above zero. ``None``: always wait up to ``max_wait_s``.
    """

    def __init__(
        self,
        infer: Callable[[np.ndarray], list[RawOutput]],
        *,
        max_batch: int,
        max_wait_s: float,
        observer: BatchObserver | None = None,
        pending: Callable[[], int] | None = None,
    ) -> None:
        self.infer = infer
        self.pending = pending
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.observer = observer
        self.queue: asyncio.Queue[_Job | None] = asyncio.Queue()
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ort")
        self.closed = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the worker on the running loop."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name="micro-batcher")

    @property
    def waiting(self) -> int:
        """Images queued for the model."""
        return self.queue.qsize()

    async def submit(self, pixels: np.ndarray) -> RawOutput:
        """Queue one ``(H, W, 3)`` image and wait for its outputs."""
        if self.closed:
            raise Closed("The model is being replaced or the server is stopping.")
        future: asyncio.Future[RawOutput] = asyncio.get_running_loop().create_future()
        self.queue.put_nowait(_Job(pixels, future))
        return await future

    async def close(self) -> None:
        """Finish every queued image, then stop the worker and its thread."""
        self.closed = True
        if self._task is not None:
            self.queue.put_nowait(None)
            await self._task
        self.executor.shutdown(wait=True)

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
            await self._run_batch(loop, jobs)

    async def _run_batch(self, loop: asyncio.AbstractEventLoop, jobs: list[_Job]) -> None:
        live = [j for j in jobs if not j.future.done()]  # a disconnected client's future may be cancelled
        if not live:
            return
        pixels = np.stack([j.pixels for j in live])  # (B, H, W, 3)
        t = time.perf_counter()
        try:
            outputs = await loop.run_in_executor(self.executor, self.infer, pixels)
        except Exception as exc:  # the model call failed: every waiting request learns it
            for j in live:
                if not j.future.done():
                    j.future.set_exception(exc)
            return
        if self.observer is not None:
            self.observer(len(live), time.perf_counter() - t)
        for j, out in zip(live, outputs, strict=True):
            if not j.future.done():
                j.future.set_result(out)
