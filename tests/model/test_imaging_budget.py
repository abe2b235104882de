"""The process-wide budget of decoding bytes in flight: reserved before pixels are decoded, given back
after, waited for in order, refused with a retryable error when there is no room in time."""

from __future__ import annotations

import io
import threading
import time

import numpy as np
import pytest
from factories import jpeg_bytes
from PIL import Image

import model.imaging as imaging
from model.imaging import (
    CorruptImageError,
    DecodeBudget,
    DecodeBusyError,
    ImageError,
    ImageTooLargeError,
    configure_decode_budget,
    decode_budget,
    decode_cost,
    decode_image,
)


class Recording(DecodeBudget):
    def __init__(self, capacity: int = 2**40, **kwargs: float) -> None:
        super().__init__(capacity, **kwargs)
        self.reserved: list[int] = []

    def acquire(self, nbytes: int) -> None:
        self.reserved.append(nbytes)
        super().acquire(nbytes)


def _png(mode: str, size: tuple[int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size).save(buf, "PNG")
    return buf.getvalue()


def test_reserve_and_release_account_bytes() -> None:
    budget = DecodeBudget(100)
    with budget.reserve(60):
        assert budget.in_use == 60
        with budget.reserve(40):
            assert budget.in_use == 100
    assert budget.in_use == 0
    with pytest.raises(RuntimeError), budget.reserve(70):
        raise RuntimeError("decoder fault")
    assert budget.in_use == 0  # given back on failure too


def test_more_than_the_whole_capacity_is_refused_at_once() -> None:
    budget = DecodeBudget(1000, max_wait_s=30)
    t = time.monotonic()
    with pytest.raises(ImageTooLargeError, match=r"more than the whole decode budget") as info:
        budget.acquire(1001)
    assert time.monotonic() - t < 1 and info.value.code == "image_too_large"


def test_waits_for_room_then_proceeds() -> None:
    budget = DecodeBudget(100, max_wait_s=10)
    budget.acquire(80)
    threading.Timer(0.2, budget.release, (80,)).start()
    t = time.monotonic()
    with budget.reserve(50):
        waited = time.monotonic() - t
    assert 0.1 < waited < 5


def test_refused_after_the_bounded_wait_with_a_retryable_error() -> None:
    budget = DecodeBudget(100, max_wait_s=0.2)
    budget.acquire(80)
    t = time.monotonic()
    with pytest.raises(DecodeBusyError) as info:
        budget.acquire(50)
    waited = time.monotonic() - t
    assert 0.15 < waited < 3
    err = info.value
    assert isinstance(err, ImageError) and err.code == "overloaded" and err.retry_after >= 1
    assert "at capacity" in err.message and "Retry in" in err.message
    assert budget.refused == 1 and budget.waiting == 0 and budget.in_use == 80


def test_first_come_first_served_so_large_photos_are_not_starved() -> None:
    budget = DecodeBudget(10, max_wait_s=10)
    budget.acquire(6)
    order: list[str] = []

    def take(name: str, n: int) -> None:
        with budget.reserve(n):
            order.append(name)
            time.sleep(0.05)

    big = threading.Thread(target=take, args=("big", 8))
    big.start()
    while budget.waiting < 1:
        time.sleep(0.005)
    small = threading.Thread(target=take, args=("small", 2))  # would fit now, but queues behind
    small.start()
    while budget.waiting < 2:
        time.sleep(0.005)
    assert order == []
    budget.release(6)
    big.join(5)
    small.join(5)
    assert order == ["big", "small"] and budget.in_use == 0


def test_many_threads_never_exceed_the_capacity() -> None:
    budget = DecodeBudget(1000, max_wait_s=30)
    high = [0]
    lock = threading.Lock()
    rng = np.random.default_rng(0)
    sizes = rng.integers(1, 400, size=(16, 40)).tolist()

    def work(mine: list[int]) -> None:
        for n in mine:
            with budget.reserve(n):
                with lock:
                    high[0] = max(high[0], budget.in_use)
                time.sleep(0.0005)

    threads = [threading.Thread(target=work, args=(s,)) for s in sizes]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert high[0] <= 1000 and budget.in_use == 0 and budget.waiting == 0 and budget.refused == 0


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="capacity_bytes > 0"):
        DecodeBudget(0)
    with pytest.raises(ValueError, match="max_wait_s >= 0"):
        DecodeBudget(10, max_wait_s=-1)


# decode_image with a budget ----------------------------------------------------------------------
def test_decode_reserves_its_cost_before_decoding_and_gives_it_back() -> None:
    budget = Recording()
    decoded = decode_image(_png("RGBA", (300, 200)), budget=budget)
    assert decoded.pixels.shape == (200, 300, 3)
    assert budget.reserved == [decode_cost("PNG", "RGBA", (300, 200))]
    assert budget.in_use == 0


def test_reduced_scale_jpeg_reserves_for_the_reduced_size() -> None:
    budget = Recording()
    decoded = decode_image(jpeg_bytes(1600, 1200), draft_size=224, budget=budget)
    assert decoded.pixels.shape == (300, 400, 3)
    assert budget.reserved == [decode_cost("JPEG", "RGB", (400, 300))]


def test_progressive_jpeg_reserves_libjpegs_coefficient_buffer() -> None:
    budget = Recording()
    buf = io.BytesIO()
    Image.fromarray(np.zeros((1200, 1600, 3), np.uint8)).save(buf, "JPEG", progressive=True)
    decode_image(buf.getvalue(), draft_size=224, budget=budget)
    coefficients = budget.reserved[0] - decode_cost("JPEG", "RGB", (400, 300))
    assert 1600 * 1200 * 2 * 1.5 <= coefficients <= 1600 * 1200 * 2 * 1.6  # 4:2:0, 2 bytes each


def test_refused_headers_reserve_nothing_and_failures_give_back() -> None:
    budget = Recording()
    with pytest.raises(ImageTooLargeError):
        decode_image(_png("L", (9000, 9000)), budget=budget)
    assert budget.reserved == []
    png = _png("RGB", (400, 300))
    with pytest.raises(CorruptImageError):
        decode_image(png[: len(png) // 2], budget=budget)
    assert len(budget.reserved) == 1 and budget.in_use == 0


def test_decode_without_room_raises_busy_and_decodes_nothing() -> None:
    budget = DecodeBudget(decode_cost("PNG", "RGB", (400, 300)) + 1000, max_wait_s=0.05)
    budget.acquire(5000)
    with pytest.raises(DecodeBusyError):
        decode_image(_png("RGB", (400, 300)), budget=budget)
    budget.release(5000)
    assert decode_image(_png("RGB", (400, 300)), budget=budget).pixels.shape == (300, 400, 3)
    with pytest.raises(ImageTooLargeError, match="decode budget"):
        decode_image(_png("RGB", (800, 600)), budget=budget)


def test_process_wide_budget_and_its_configuration() -> None:
    first = decode_budget()
    assert decode_budget() is first and first.capacity_bytes == imaging.DEFAULT_DECODE_BUDGET_BYTES
    try:
        mine = configure_decode_budget(123_456_789, max_wait_s=0.5)
        assert decode_budget() is mine and mine.max_wait_s == 0.5
    finally:
        imaging._budget = first
