"""Video scoring as background jobs: accepted at once (202), run a few at a time, polled, forgotten.

Jobs wait in a bounded queue (``video_max_queued``; one more is refused with 429) and run
``video_max_jobs`` at a time on their own threads, each lowered in CPU priority (nice +10 on
Linux) so photo requests' decoding and the event loop come first. Their frames reach the model
through the same micro-batcher as photos, but only while no photo is in the pipeline
(:meth:`serving.state.ServingState.score_frames`): photo scoring is never starved by a video,
a video only slows down under photo traffic. Job state lives in memory, reports as JSON files
under ``video_dir``; both are dropped ``video_job_ttl_s`` after the job finished.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from model.logs import log_event
from serving.schemas import JobError, JobStatus, VideoReport

log = logging.getLogger(__name__)


class QueueFull(Exception):
    """No room for another job; ``retry_after`` in seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"The video queue is full; retry in {retry_after} s.")
        self.retry_after = retry_after


class JobFailed(Exception):
    """A job ended without a report; ``code`` is stable."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class Job:
    """One recording to score."""

    id: str
    name: str
    path: Path  # the recording
    owned: bool  # the recording is the job's own copy (an upload): deleted when the job finishes
    folder: Path  # the job's files (upload, report), removed when the job expires
    created_at: float = field(default_factory=time.time)
    status: str = "queued"
    started_at: float | None = None
    finished_at: float | None = None
    processed_s: float = 0.0
    duration_s: float = 0.0
    error: JobError | None = None
    report_path: Path | None = None
    cancel: threading.Event = field(default_factory=threading.Event)


Runner = Callable[[Job], Awaitable[VideoReport]]


def lower_priority() -> None:
    """Nice the calling thread by 10 (Linux threads have their own nice value); elsewhere nothing."""
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)


class VideoJobs:
    """The job table and its workers (only the event loop touches the table).

    Args:
        directory: Where uploads and reports go.
        workers: Jobs running at once.
        max_queued: Jobs waiting at most.
        ttl_s: How long a finished job is kept.
        timeout_s: Longest run of a job.
    """

    def __init__(
        self, directory: Path, *, workers: int, max_queued: int, ttl_s: float, timeout_s: float
    ) -> None:
        self.directory = directory
        self.workers = workers
        self.max_queued = max_queued
        self.ttl_s = ttl_s
        self.timeout_s = timeout_s
        self.jobs: dict[str, Job] = {}
        self._queue: asyncio.Queue[Job] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._run: Runner | None = None
        self.seconds_per_job = 60.0  # EWMA of run time, for Retry-After

    def new_job(self, name: str, source: Path | None = None) -> Job:
        """A job with a new id and its folder (created); its recording is ``source`` (left in
        place) or, for an upload, ``input`` in the folder (deleted when the job finishes)."""
        job_id = uuid.uuid4().hex
        folder = self.directory / job_id
        folder.mkdir(parents=True, exist_ok=False)
        if source is not None:
            return Job(job_id, name, source, owned=False, folder=folder)
        return Job(job_id, name, folder / "input", owned=True, folder=folder)

    def start(self, run: Runner) -> None:
        """Start the workers on the running loop."""
        self._run = run
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._worker(), name=f"video-job-{i}") for i in range(self.workers)]

    @property
    def waiting(self) -> int:
        return sum(1 for j in self.jobs.values() if j.status == "queued")

    def check_room(self) -> None:
        """Raise :class:`QueueFull` when another job could not wait."""
        self.expire()
        if self.waiting >= self.max_queued:
            retry = int(min(3600, max(1, self.seconds_per_job * (self.waiting + 1) / self.workers)))
            raise QueueFull(retry)

    def submit(self, job: Job) -> None:
        """Queue ``job`` (its input is in place); raises :class:`QueueFull`."""
        self.check_room()
        self.jobs[job.id] = job
        self._queue.put_nowait(job)
        log_event(log, "video_job_queued", job_id=job.id, name=job.name)

    def get(self, job_id: str) -> Job | None:
        self.expire()
        return self.jobs.get(job_id)

    def position(self, job: Job) -> int | None:
        """Jobs queued before ``job`` (``None`` unless it is queued)."""
        if job.status != "queued":
            return None
        return sum(1 for j in self.jobs.values() if j.status == "queued" and j.created_at < job.created_at)

    def expire(self) -> None:
        """Forget jobs finished more than ``ttl_s`` ago, with their files."""
        now = time.time()
        for job_id, job in list(self.jobs.items()):
            if job.finished_at is not None and now - job.finished_at > self.ttl_s:
                del self.jobs[job_id]
                shutil.rmtree(job.folder, ignore_errors=True)

    def status(self, job: Job) -> JobStatus:
        """The job as ``GET /v1/jobs/{id}`` answers it (with the report once done)."""
        report = None
        if job.status == "done" and job.report_path is not None and job.report_path.is_file():
            report = VideoReport.model_validate_json(job.report_path.read_bytes())
        progress = (
            1.0
            if job.status == "done"
            else (min(1.0, job.processed_s / job.duration_s) if job.duration_s > 0 else 0.0)
        )
        return JobStatus(
            job_id=job.id,
            status=job.status,  # type: ignore[arg-type]
            name=job.name,
            created_at=job.created_at,
            started_at=job.started_at,
            finished_at=job.finished_at,
            expires_at=None if job.finished_at is None else job.finished_at + self.ttl_s,
            progress=round(progress, 4),
            processed_s=round(job.processed_s, 3),
            duration_s=job.duration_s,
            queue_position=self.position(job),
            error=job.error,
            report=report,
        )

    async def _worker(self) -> None:
        assert self._run is not None
        while True:
            job = await self._queue.get()
            if job.cancel.is_set():
                self._finish(
                    job, JobError(code="cancelled", message="The server stopped before the job ran.")
                )
                continue
            job.status, job.started_at = "running", time.time()
            try:
                report = await asyncio.wait_for(self._run(job), self.timeout_s)
            except TimeoutError:
                job.cancel.set()
                self._finish(
                    job,
                    JobError(
                        code="deadline_exceeded",
                        message=f"The job ran past video_job_timeout_s ({self.timeout_s:g} s).",
                    ),
                )
            except JobFailed as exc:
                self._finish(job, JobError(code=exc.code, message=exc.message))
            except asyncio.CancelledError:
                self._finish(job, JobError(code="cancelled", message="The server stopped while the job ran."))
                raise
            except Exception as exc:  # a bug: the job fails, the worker lives
                log.error("video_job_failed", exc_info=exc, extra={"fields": {"job_id": job.id}})
                self._finish(
                    job,
                    JobError(
                        code="internal_error", message="Internal error; quote the job id when reporting it."
                    ),
                )
            else:
                report_path = job.folder / "report.json"
                report_path.write_text(report.model_dump_json(), encoding="utf-8")
                job.report_path = report_path
                self._finish(job, None)

    def _finish(self, job: Job, error: JobError | None) -> None:
        job.finished_at = time.time()
        job.status = "failed" if error is not None else "done"
        job.error = error
        if job.started_at is not None:
            self.seconds_per_job += 0.3 * (job.finished_at - job.started_at - self.seconds_per_job)
        if job.owned:
            job.path.unlink(missing_ok=True)
        log_event(
            log, "video_job_finished", job_id=job.id, status=job.status, error=error.code if error else None
        )

    async def close(self) -> None:
        """Cancel every job (running ones stop at their next batch) and stop the workers."""
        for job in self.jobs.values():
            job.cancel.set()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
