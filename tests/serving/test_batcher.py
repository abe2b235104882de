"""The micro-batcher groups concurrent images and routes each result back to its caller."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from serving.batcher import Admission, Closed, MicroBatcher, Overloaded
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
        await b.close()
        return out

    assert all(isinstance(o, RuntimeError) for o in asyncio.run(main()))


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
