"""What a running server holds: the model slot (predictor + batcher), pools, signer, metrics.

A reload builds a new slot beside the old one (verify, open the session, warm it), swaps the
reference in one assignment, then retires the old slot once the requests that started on it
have finished. Every request uses exactly one slot from start to end, so none fails mid-swap.

Loading and warming run on a daemon thread under ``reload_timeout_s``: a bundle that hangs
(a graph whose warm-up never ends, a file system that stops answering) is refused when the
deadline passes, the lock is released and the old model keeps serving; the abandoned thread
cannot keep the process alive. Shutdown drains the batcher for at most ``shutdown_grace_s``.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from model.bundle import BundleError
from model.imaging import ImageError, configure_decode_budget
from model.logs import log_event
from serving.batcher import Admission, Closed, DeadlineExceeded, InferenceFailed, MicroBatcher
from serving.core.config import Settings
from serving.gallery.store import Gallery
from serving.metrics import Metrics
from serving.predictor import Predictor, PreparedImage, RawOutput
from serving.receipts import ReceiptSigner
from serving.schemas import VideoReport
from serving.video.analysis import VideoOptions, analyse_video
from serving.video.decode import VideoError, VideoLimits
from serving.video.jobs import Job, JobFailed, VideoJobs, lower_priority

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

    async def retire(self, timeout: float | None = None) -> bool:
        """Wait for the requests on this slot, then finish its queue and stop its thread.

        Args:
            timeout: Longest wait in all; then waiting images fail and the slot is dropped.

        Returns:
            Whether everything finished in time.
        """
        loop = asyncio.get_running_loop()
        end = None if timeout is None else loop.time() + timeout
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            await self.batcher.close(0)
            return False
        return await self.batcher.close(None if end is None else max(0.0, end - loop.time()))


def run_in_daemon_thread(fn: Callable[[], Predictor], name: str) -> asyncio.Future[Predictor]:
    """Run ``fn`` on a new daemon thread; its result or exception completes the returned future.

    A result that arrives after the future was given up on (a deadline) is dropped with its
    session. A daemon thread is not joined at exit, so a call that never returns cannot hold up
    the process.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Predictor] = loop.create_future()

    def deliver(result: Predictor | None, exc: BaseException | None) -> None:
        if future.done():
            log_event(log, "late_load_discarded", logging.WARNING, thread=name)
            return
        if exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(result)  # type: ignore[arg-type]

    def target() -> None:
        try:
            result = fn()
        except BaseException as exc:  # handed to the waiter
            loop.call_soon_threadsafe(deliver, None, exc)
        else:
            loop.call_soon_threadsafe(deliver, result, None)

    threading.Thread(target=target, name=name, daemon=True).start()
    return future


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
        # decoded bytes in flight, process-wide: reserved from each header before any pixel exists
        self.decode_budget = configure_decode_budget(
            settings.decode_budget_bytes, max_wait_s=settings.decode_wait_s
        )
        self.signer = ReceiptSigner.from_settings(settings.receipt_key_file)
        self.slot: ModelSlot | None = None
        self.stopping = False
        self.started_at = time.time()
        self.loaded_at = 0.0
        self.decoding = 0  # images in the decode pool: the batcher waits for company only then
        self._reload_lock = asyncio.Lock()
        self._retiring: set[asyncio.Task[bool]] = set()
        self.abandoned_loads = 0  # loads given up at their deadline whose thread may still run
        self.gallery: Gallery | None = None
        if settings.gallery_enabled:
            self.gallery = Gallery(settings.resolved_gallery_path())
        self._video_tmp: tempfile.TemporaryDirectory[str] | None = None
        if settings.video_dir is None:
            self._video_tmp = tempfile.TemporaryDirectory(prefix="authlens-video-")
        video_dir = settings.video_dir or Path(self._video_tmp.name)  # type: ignore[union-attr]
        self.video_jobs = VideoJobs(
            video_dir,
            workers=settings.video_max_jobs,
            max_queued=settings.video_max_queued,
            ttl_s=settings.video_job_ttl_s,
            timeout_s=settings.video_job_timeout_s,
        )
        self.video_pool = ThreadPoolExecutor(
            max_workers=settings.video_max_jobs, thread_name_prefix="video", initializer=lower_priority
        )
        self.video_limits = VideoLimits(
            max_bytes=settings.video_max_bytes,
            max_duration_s=settings.video_max_duration_s,
            max_pixels=settings.video_max_pixels,
        )

    # lifecycle --------------------------------------------------------------------------
    async def _build_slot(self) -> ModelSlot:
        s = self.settings

        def build() -> Predictor:
            predictor = Predictor.load(
                s.bundle,
                threads=self.ort_threads,
                int8=s.int8,
                max_pixels=s.max_pixels,
                budget=self.decode_budget,
            )
            try:
                predictor.warmup()
                predictor.attach_gallery(self.gallery, widely_reused=s.gallery_widely_reused)
                if self.gallery is not None:
                    _ = predictor.embedding_key  # computed once here, not on a request
            except BundleError:
                raise
            except Exception as exc:  # an ONNX Runtime error, an image error on the warm-up photo ...
                raise BundleError(
                    f"{s.bundle}: the model failed its warm-up run ({type(exc).__name__}: {exc})."
                ) from None
            return predictor

        loading = run_in_daemon_thread(build, "bundle-load")
        try:
            predictor = await asyncio.wait_for(asyncio.shield(loading), s.reload_timeout_s)
        except TimeoutError:
            self.abandoned_loads += 1
            log_event(log, "load_abandoned", logging.ERROR, bundle=str(s.bundle), seconds=s.reload_timeout_s)
            raise BundleError(
                f"{s.bundle}: loading and warming the model did not finish within {s.reload_timeout_s:g} s "
                "(reload_timeout_s); it was abandoned."
            ) from None
        batcher = MicroBatcher(
            predictor.infer,
            max_batch=s.batch_max_size,
            max_wait_s=s.batch_max_wait_ms / 1000,
            observer=self.metrics.observe_batch,
            pending=lambda: self.decoding,
            stall_s=s.batcher_stall_s,
            on_event=self.metrics.observe_pipeline_event,
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
        """Load, verify and warm the configured bundle (raises BundleError); start the video workers."""
        self._install(await self._build_slot())
        self.video_jobs.start(self.run_video_job)

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
        """Stop taking work, finish what was admitted within ``shutdown_grace_s``, release threads."""
        self.stopping = True
        self.metrics.ready.set(0)
        await self.video_jobs.close()  # running jobs stop at their next batch of frames
        grace = self.settings.shutdown_grace_s
        drained = True
        if self.slot is not None:
            drained = await self.slot.retire(grace)
        if self._retiring and drained:  # old slots of reloads still finishing their requests
            try:
                drained = all(await asyncio.wait_for(asyncio.gather(*self._retiring), grace))
            except TimeoutError:
                drained = False
        if not drained:
            log_event(log, "drain_incomplete", logging.WARNING, grace_s=grace)
        self.decode_pool.shutdown(wait=drained, cancel_futures=not drained)
        self.video_pool.shutdown(wait=False, cancel_futures=True)
        if self.gallery is not None:
            self.gallery.close()
        if self._video_tmp is not None:
            self._video_tmp.cleanup()

    @property
    def ready(self) -> bool:
        return self.slot is not None and not self.stopping

    def health(self) -> str | None:
        """Why the server cannot serve now (``None`` when it can): not loaded, stopping, or the
        batcher stuck in a model call or stopped."""
        if self.slot is None:
            return "not_loaded"
        if self.stopping:
            return "stopping"
        problem = self.slot.batcher.health()
        return f"batcher_{problem}" if problem else None

    def current(self) -> ModelSlot:
        """The slot new requests should use (raises NotReady)."""
        if self.slot is None or self.stopping:
            raise NotReady("The model is not loaded yet or the server is stopping.")
        return self.slot

    # the pipeline -----------------------------------------------------------------------
    async def score(
        self,
        slot: ModelSlot,
        files: Sequence[tuple[str | None, bytes | ImageError]],
        *,
        explain: bool,
        deadline: float | None = None,
    ) -> list[Scored]:
        """Decode (thread pool) and score (micro-batcher) photos; image errors are per photo.

        The caller holds ``slot.use()`` and has admitted ``len(files)`` images. Cancelling the
        call (the client went away) cancels every photo: those not yet decoded are never
        decoded, those queued for the model are skipped.

        Args:
            slot: The model slot the request holds.
            files: ``(name, bytes or the error already found)`` per photo.
            explain: Prepare overlays.
            deadline: ``loop.time()`` by which every photo must be scored.

        Raises:
            DeadlineExceeded: the deadline passed (nothing more is computed for the request).
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
            try:
                raw = await slot.batcher.submit(prepared.pixels, deadline=deadline)
            except InferenceFailed as exc:
                self.metrics.image_errors.labels(exc.code).inc()
                return Scored(name, error=exc)
            self.metrics.observe_image(raw.ood_score > predictor.manifest.ood.threshold)
            return Scored(name, prepared=prepared, raw=raw, decoded_after=t_decoded - t0)

        tasks = [asyncio.ensure_future(one(name, data)) for name, data in files]
        try:
            async with asyncio.timeout_at(deadline):
                return list(await asyncio.gather(*tasks))
        except TimeoutError:
            raise DeadlineExceeded(
                "The request was not scored within request_timeout_s; nothing more is computed for it."
            ) from None
        finally:
            for task in tasks:  # cancelled or failed: stop the rest (queued decodes never start)
                task.cancel()

    # video jobs ------------------------------------------------------------------------
    async def score_frames(self, slot: ModelSlot, pixels: np.ndarray) -> list[RawOutput]:
        """Score video frames through the micro-batcher, at low priority: a batch of frames is
        handed over only while no photo request is in the pipeline (decoding or queued for the
        model), so a photo waits for at most one batch of frames already in the model."""
        while self.admission.depth > 0 or self.decoding > 0 or slot.batcher.waiting > 0:
            await asyncio.sleep(0.005)
        return list(await asyncio.gather(*(slot.batcher.submit(p) for p in pixels)))

    async def run_video_job(self, job: Job) -> VideoReport:
        """Score one recording on the current model (the job's runner)."""
        try:
            slot = self.current()
        except NotReady as exc:
            raise JobFailed("not_ready", str(exc)) from None
        loop = asyncio.get_running_loop()
        s = self.settings
        options = VideoOptions(sample_fps=s.video_sample_fps, batch=s.video_batch, limits=self.video_limits)
        wait_s = max(60.0, 4 * s.batcher_stall_s)

        def score(pixels: np.ndarray) -> list[RawOutput]:
            return asyncio.run_coroutine_threadsafe(self.score_frames(slot, pixels), loop).result(wait_s)

        def progress(done: float, total: float) -> None:
            job.processed_s, job.duration_s = done, total

        def work() -> VideoReport:
            return analyse_video(
                job.path,
                slot.predictor,
                score=score,
                options=options,
                name=job.name,
                progress=progress,
                cancelled=job.cancel.is_set,
            )

        async with slot.use():
            try:
                report = await loop.run_in_executor(self.video_pool, work)
            except VideoError as exc:
                raise JobFailed(exc.code, exc.message) from None
            except (Closed, InferenceFailed, TimeoutError) as exc:
                raise JobFailed(
                    "inference_failed", f"The model could not score the frames ({type(exc).__name__})."
                ) from None
        job.processed_s = report.stopped_at_s if report.stopped_at_s is not None else report.video.duration_s
        return report


def _prepare(predictor: Predictor, data: bytes, explain: bool) -> PreparedImage:
    return predictor.prepare(data, explain=explain)
