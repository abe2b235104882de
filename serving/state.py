"""What a running server holds: the model slot (predictor + batcher), pools, signer, metrics.

A reload builds a new slot beside the old one (verify, open the session, warm it), swaps the
reference in one assignment, then retires the old slot once the requests that started on it
have finished. Every request uses exactly one slot from start to end, so none fails mid-swap.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass

from model.bundle import BundleError
from model.imaging import ImageError
from model.logs import log_event
from serving.batcher import Admission, MicroBatcher
from serving.core.config import Settings
from serving.metrics import Metrics
from serving.predictor import Predictor, PreparedImage, RawOutput
from serving.receipts import ReceiptSigner

log = logging.getLogger(__name__)


class NotReady(Exception):
    """No model is serving (starting, or stopping)."""


class ReloadInProgress(Exception):
    """Another reload is running."""


class ModelSlot:
    """One predictor with its batcher, counting the requests using it."""

    def __init__(self, predictor: Predictor, batcher: MicroBatcher) -> None:
        self.predictor = predictor
        self.batcher = batcher
        self.active = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @asynccontextmanager
    async def use(self) -> AsyncIterator[ModelSlot]:
        """Hold the slot for one request; a retired slot refuses (raises NotReady)."""
        if self.batcher.closed:
            raise NotReady("The model is being replaced or the server is stopping; retry.")
        self.active += 1
        self._idle.clear()
        try:
            yield self
        finally:
            self.active -= 1
            if self.active == 0:
                self._idle.set()

    async def retire(self) -> None:
        """Wait for the requests on this slot, then finish its queue and stop its thread."""
        await self._idle.wait()
        await self.batcher.close()


@dataclass
class Scored:
    """One photo after the pipeline: prepared and scored, or refused with an image error."""

    name: str | None
    prepared: PreparedImage | None = None
    raw: RawOutput | None = None
    error: ImageError | None = None
    decoded_after: float = 0.0  # seconds from the start of the pipeline until decoded


class ServingState:
    """Everything the routes share; created and closed by the app's lifespan."""

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        decode_workers, self.ort_threads = settings.threads()
        self.decode_pool = ThreadPoolExecutor(max_workers=decode_workers, thread_name_prefix="decode")
        self.admission = Admission(settings.queue_size)
        self.signer = ReceiptSigner.from_settings(settings.receipt_key_file)
        self.slot: ModelSlot | None = None
        self.stopping = False
        self.started_at = time.time()
        self.loaded_at = 0.0
        self.decoding = 0  # images in the decode pool: the batcher waits for company only then
        self._reload_lock = asyncio.Lock()
        self._retiring: set[asyncio.Task[None]] = set()

    # lifecycle --------------------------------------------------------------------------
    async def _build_slot(self) -> ModelSlot:
        s = self.settings

        def build() -> Predictor:
            predictor = Predictor.load(
                s.bundle, threads=self.ort_threads, int8=s.int8, max_pixels=s.max_pixels
            )
            try:
                predictor.warmup()
            except Exception as exc:  # e.g. bundle.json's input size disagrees with the graph
                raise BundleError(
                    f"{s.bundle}: the model failed its warm-up run ({type(exc).__name__}: {exc})."
                ) from None
            return predictor

        predictor = await asyncio.get_running_loop().run_in_executor(None, build)
        batcher = MicroBatcher(
            predictor.infer,
            max_batch=s.batch_max_size,
            max_wait_s=s.batch_max_wait_ms / 1000,
            observer=self.metrics.observe_batch,
            pending=lambda: self.decoding,
        )
        batcher.start()
        return ModelSlot(predictor, batcher)

    def _install(self, slot: ModelSlot) -> None:
        self.slot = slot
        self.loaded_at = time.time()
        ref = slot.predictor.model_ref
        self.metrics.set_model(ref.name, ref.version, ref.bundle_sha256)
        self.metrics.ready.set(1)
        log_event(log, "model_serving", name=ref.name, version=ref.version, bundle_sha256=ref.bundle_sha256)

    async def start(self) -> None:
        """Load, verify and warm the configured bundle (raises BundleError)."""
        self._install(await self._build_slot())

    async def reload(self) -> tuple[str, str]:
        """Swap in the bundle now in the configured directory; the old one serves until then.

        Returns:
            ``(previous_sha256, new_sha256)``.

        Raises:
            BundleError: the new bundle does not verify or load; the old one keeps serving.
            ReloadInProgress: another reload is running.
        """
        if self._reload_lock.locked():
            raise ReloadInProgress("A reload is already in progress.")
        async with self._reload_lock:
            old = self.slot
            try:
                new = await self._build_slot()
            except BundleError as exc:
                self.metrics.reloads.labels("refused").inc()
                log_event(log, "reload_refused", logging.WARNING, error=str(exc))
                raise
            self._install(new)  # one assignment: requests from here on use the new slot
            self.metrics.reloads.labels("ok").inc()
            if old is not None:
                task = asyncio.get_running_loop().create_task(old.retire())
                self._retiring.add(task)
                task.add_done_callback(self._retiring.discard)
            prev = old.predictor.bundle.sha256 if old else ""
            return prev, new.predictor.bundle.sha256

    async def close(self) -> None:
        """Stop taking work, finish what was admitted, release threads."""
        self.stopping = True
        self.metrics.ready.set(0)
        if self.slot is not None:
            await self.slot.retire()
        if self._retiring:
            await asyncio.gather(*self._retiring)
        self.decode_pool.shutdown(wait=True)

    @property
    def ready(self) -> bool:
        return self.slot is not None and not self.stopping

    def current(self) -> ModelSlot:
        """The slot new requests should use (raises NotReady)."""
        if self.slot is None or self.stopping:
            raise NotReady("The model is not loaded yet or the server is stopping.")
        return self.slot

    # the pipeline -----------------------------------------------------------------------
    async def score(
        self, slot: ModelSlot, files: Sequence[tuple[str | None, bytes | ImageError]], *, explain: bool
    ) -> list[Scored]:
        """Decode (thread pool) and score (micro-batcher) photos; image errors are per photo.

        The caller holds ``slot.use()`` and has admitted ``len(files)`` images.
        """
        loop = asyncio.get_running_loop()
        predictor = slot.predictor
        t0 = time.perf_counter()

        async def one(name: str | None, data: bytes | ImageError) -> Scored:
            if isinstance(data, ImageError):
                self.metrics.image_errors.labels(data.code).inc()
                return Scored(name, error=data)
            t = time.perf_counter()
            self.decoding += 1
            try:
                prepared = await loop.run_in_executor(self.decode_pool, _prepare, predictor, data, explain)
            except ImageError as exc:
                self.metrics.image_errors.labels(exc.code).inc()
                return Scored(name, error=exc)
            finally:
                self.decoding -= 1
            t_decoded = time.perf_counter()
            self.metrics.decode.observe(t_decoded - t)
            raw = await slot.batcher.submit(prepared.pixels)
            self.metrics.observe_image(raw.ood_score > predictor.manifest.ood.threshold)
            return Scored(name, prepared=prepared, raw=raw, decoded_after=t_decoded - t0)

        return list(await asyncio.gather(*(one(name, data) for name, data in files)))


def _prepare(predictor: Predictor, data: bytes, explain: bool) -> PreparedImage:
    return predictor.prepare(data, explain=explain)
