"""The micro-batcher groups concurrent images and routes each result back to its caller, and
contains what goes wrong: deadlines, cancelled callers, a failing image, a hung or dead worker."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from serving.batcher import (
    Admission,
    Closed,
    DeadlineExceeded,
    InferenceFailed,
    MicroBatcher,
    Overloaded,
)
from serving.predictor import RawOutput


def _echo(sizes: list[int]):
    """An infer function whose p_genuine is the image's first pixel value."""

    def infer(pixels: np.ndarray) -> list[RawOutput]:
        assert threading.current_thread() is not threading.main_thread()  # off the event loop
        sizes.append(len(pixels))
        return [
            RawOutput(float(p[0, 0, 0]), np.zeros(1), np.zeros((1, 1)), np.zeros((1, 1, 1)), 0.0)
            for p in pixels
        ]

    return infer


def test_concurrent_images_share_calls_and_get_their_own_results() -> None:
    sizes: list[int] = []
    observed: list[int] = []

    async def main() -> list[float]:
        b = MicroBatcher(_echo(sizes), max_batch=4, max_wait_s=0.05, observer=lambda n, s: observed.append(n))
        b.start()
        outs = await asyncio.gather(*(b.submit(np.full((2, 2, 3), i, np.uint8)) for i in range(10)))
        await b.close()
        return [o.p_genuine for o in outs]

    assert asyncio.run(main()) == [float(i) for i in range(10)]
    assert sizes == [4, 4, 2] and observed == sizes


def test_a_lone_image_waits_at_most_max_wait() -> None:
    async def main() -> float:
        b = MicroBatcher(_echo([]), max_batch=16, max_wait_s=0.02)
        b.start()
        loop = asyncio.get_running_loop()
        t = loop.time()
        await b.submit(np.zeros((2, 2, 3), np.uint8))
        elapsed = loop.time() - t
        await b.close()
        return elapsed

    assert asyncio.run(main()) < 1.0


def test_close_drains_then_refuses() -> None:
    async def main() -> None:
        b = MicroBatcher(_echo([]), max_batch=2, max_wait_s=0.01)
        b.start()
        pending = [asyncio.ensure_future(b.submit(np.zeros((2, 2, 3), np.uint8))) for _ in range(5)]
        await asyncio.sleep(0)
        await b.close()
        assert all(p.done() and p.exception() is None for p in pending)
        with pytest.raises(Closed):
            await b.submit(np.zeros((2, 2, 3), np.uint8))

    asyncio.run(main())


def test_model_failure_reaches_every_waiting_caller() -> None:
    def broken(pixels: np.ndarray) -> list[RawOutput]:
        raise RuntimeError("session failed")

    async def main() -> list[BaseException | RawOutput]:
        b = MicroBatcher(broken, max_batch=4, max_wait_s=0.01)
        b.start()
        out = await asyncio.gather(
            *(b.submit(np.zeros((2, 2, 3), np.uint8)) for _ in range(3)), return_exceptions=True
        )
        assert b.health() is None  # the worker lives on
        await b.close()
        return out

    assert all(isinstance(o, InferenceFailed) for o in asyncio.run(main()))


def test_a_poisoned_image_fails_alone_and_its_batch_is_served() -> None:
    """ONNX Runtime fails on one image of a batch: the batch is retried image by image, so only
    that image gets inference_failed (Ray Serve fails the whole batch)."""
    calls: list[int] = []
    echo = _echo(calls)

    def picky(pixels: np.ndarray) -> list[RawOutput]:
        if (pixels[:, 0, 0, 0] == 255).any():
            calls.append(-len(pixels))
            raise RuntimeError("[ONNXRuntimeError] : 1 : FAIL : indices element out of data bounds")
        return echo(pixels)

    events: list[str] = []

    async def main() -> list[BaseException | RawOutput]:
        b = MicroBatcher(picky, max_batch=8, max_wait_s=0.05, on_event=events.append)
        b.start()
        values = [1, 2, 255, 3]
        out = await asyncio.gather(
            *(b.submit(np.full((2, 2, 3), v, np.uint8)) for v in values), return_exceptions=True
        )
        await b.close()
        return out

    out = asyncio.run(main())
    assert [o.p_genuine for o in out if isinstance(o, RawOutput)] == [1.0, 2.0, 3.0]
    assert isinstance(out[2], InferenceFailed) and out[2].code == "inference_failed"
    assert calls[0] == -4 and events == ["inference_failed"]


def test_a_result_of_the_wrong_length_does_not_kill_the_worker() -> None:
    def short(pixels: np.ndarray) -> list[RawOutput]:
        return _echo([])(pixels)[:-1]

    async def main() -> tuple[list[BaseException | RawOutput], str | None]:
        b = MicroBatcher(short, max_batch=4, max_wait_s=0.01)
        b.start()
        out = await asyncio.gather(
            *(b.submit(np.zeros((2, 2, 3), np.uint8)) for _ in range(2)), return_exceptions=True
        )
        health = b.health()
        await b.close()
        return out, health

    out, health = asyncio.run(main())
    assert all(isinstance(o, InferenceFailed) for o in out) and health is None


def test_an_image_past_its_deadline_is_never_computed() -> None:
    seen: list[int] = []
    gate = threading.Event()

    def slow(pixels: np.ndarray) -> list[RawOutput]:
        gate.wait(5)
        seen.extend(int(p[0, 0, 0]) for p in pixels)
        return _echo([])(pixels)

    events: list[str] = []

    async def main() -> list[BaseException | RawOutput]:
        b = MicroBatcher(slow, max_batch=1, max_wait_s=0.0, on_event=events.append)
        b.start()
        loop = asyncio.get_running_loop()
        first = asyncio.ensure_future(b.submit(np.full((2, 2, 3), 1, np.uint8)))
        await asyncio.sleep(0.05)  # the first image is in the model, the worker busy
        late = asyncio.ensure_future(b.submit(np.full((2, 2, 3), 2, np.uint8), deadline=loop.time() + 0.1))
        await asyncio.sleep(0.3)
        gate.set()
        out = await asyncio.gather(first, late, return_exceptions=True)
        await b.close()
        return out

    out = asyncio.run(main())
    assert isinstance(out[0], RawOutput) and isinstance(out[1], DeadlineExceeded)
    assert seen == [1] and events == ["cancelled"]  # timed out while queued: skipped, not computed


def test_a_cancelled_caller_is_skipped() -> None:
    seen: list[int] = []
    gate = threading.Event()

    def slow(pixels: np.ndarray) -> list[RawOutput]:
        gate.wait(5)
        seen.extend(int(p[0, 0, 0]) for p in pixels)
        return _echo([])(pixels)

    async def main() -> None:
        b = MicroBatcher(slow, max_batch=1, max_wait_s=0.0)
        b.start()
        first = asyncio.ensure_future(b.submit(np.full((2, 2, 3), 1, np.uint8)))
        await asyncio.sleep(0.05)
        gone = asyncio.ensure_future(b.submit(np.full((2, 2, 3), 2, np.uint8)))
        await asyncio.sleep(0.05)
        gone.cancel()  # the client disconnected
        gate.set()
        await first
        await b.close()

    asyncio.run(main())
    assert seen == [1]


def test_health_reports_a_stuck_call_and_close_is_bounded() -> None:
    release = threading.Event()

    def hung(pixels: np.ndarray) -> list[RawOutput]:
        release.wait(10)
        return _echo([])(pixels)

    async def main() -> tuple[str | None, str | None, bool, float, BaseException | RawOutput]:
        b = MicroBatcher(hung, max_batch=1, max_wait_s=0.0, stall_s=0.2)
        b.start()
        stuck = asyncio.ensure_future(b.submit(np.zeros((2, 2, 3), np.uint8)))
        waiting = asyncio.ensure_future(b.submit(np.zeros((2, 2, 3), np.uint8)))
        await asyncio.sleep(0.05)
        before = b.health()
        await asyncio.sleep(0.3)
        after = b.health()
        t = time.monotonic()
        drained = await b.close(timeout=0.2)
        took = time.monotonic() - t
        release.set()
        stuck.cancel()
        return before, after, drained, took, (await asyncio.gather(waiting, return_exceptions=True))[0]

    before, after, drained, took, waiting = asyncio.run(main())
    assert before is None and after == "stuck"
    assert not drained and took < 2 and isinstance(waiting, Closed)


def test_health_reports_a_worker_that_stopped() -> None:
    async def main() -> tuple[str | None, BaseException | None]:
        b = MicroBatcher(_echo([]), max_batch=1, max_wait_s=0.0)
        b.start()
        await asyncio.sleep(0)
        assert b._task is not None
        b._task.cancel()  # what an unexpected BaseException in the worker would leave
        await asyncio.sleep(0.01)
        health = b.health()
        try:
            await b.submit(np.zeros((2, 2, 3), np.uint8))
        except Closed as exc:
            return health, exc
        return health, None

    health, refused = asyncio.run(main())
    assert health == "stopped" and isinstance(refused, Closed)


def test_admission_bounds_the_pipeline() -> None:
    a = Admission(capacity=10)
    a.acquire(8)
    with pytest.raises(Overloaded) as info:
        a.acquire(3)
    assert 1 <= info.value.retry_after <= 60
    a.release(8)
    a.acquire(10)
    assert a.depth == 10


def test_a_lone_image_is_not_held_back_when_nothing_else_is_coming() -> None:
    sizes: list[int] = []

    async def main() -> float:
        b = MicroBatcher(_echo(sizes), max_batch=16, max_wait_s=2.0, pending=lambda: 0)
        b.start()
        loop = asyncio.get_running_loop()
        t = loop.time()
        await b.submit(np.zeros((2, 2, 3), np.uint8))
        elapsed = loop.time() - t
        await b.close()
        return elapsed

    assert asyncio.run(main()) < 1.0  # not the 2 s max_wait
    assert sizes == [1]


def test_the_batch_waits_for_images_still_decoding() -> None:
    sizes: list[int] = []
    decoding = [1]  # a second image is on its way when the first arrives

    async def main() -> None:
        b = MicroBatcher(_echo(sizes), max_batch=16, max_wait_s=2.0, pending=lambda: decoding[0])
        b.start()

        async def late() -> RawOutput:
            await asyncio.sleep(0.1)  # "decoding"
            decoding[0] = 0
            return await b.submit(np.ones((2, 2, 3), np.uint8))

        await asyncio.gather(b.submit(np.zeros((2, 2, 3), np.uint8)), late())
        await b.close()

    asyncio.run(main())
    assert sizes == [2]
