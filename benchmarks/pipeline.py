"""Sections 2 and 3 of ``make bench``: decoding and preprocessing, and the in-process ceiling.

Section 2 times, on one thread, each photo's full and reduced-scale ("draft", JPEG only) decode,
the resize to the model input, and ``Predictor.prepare`` (what serving does per photo: hash,
draft decode, resize, sharpness).

Section 3 runs the served predictor without HTTP on the same photos:

* **overlapped**: decoding threads call ``Predictor.prepare`` into a bounded queue while the
  model thread takes whatever is ready (up to the largest model batch) and runs
  ``Predictor.infer``; decoding and the model overlap, as a server at its best would. Tried with
  one or all cores for ONNX Runtime and for decoding (all and all oversubscribes the cores); the
  best is the ceiling;
* **sequential**: decode a batch on one thread per core, then run it on all cores; stages not
  overlapped;
* **compute limit**: cores x 1000 / (prepare ms + model ms per photo on one thread), the rate
  if every core did useful work all the time (section 2 and section 1's one-thread figures).

Both rates are photos of whole model calls over the time between the ends of those calls, over
at least the window and :data:`MIN_BATCHES` calls: a call takes a few hundred ms, and counting
the calls that ended inside a short fixed window made both figures multiples of
16 photos / window.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

import numpy as np

from serving.bench import decode_figures, median_ms
from serving.predictor import Predictor


def decode_section(
    predictor: Predictor, photos: dict[str, bytes], *, budget_s: float
) -> list[dict[str, Any]]:
    """Section 2: per photo, full vs draft decode, resize and the whole ``prepare``, median ms."""
    spec = predictor.manifest.input
    rows = decode_figures(spec.draft_size, predictor.input_size, photos, budget_s=budget_s)
    for row in rows:
        row["prepare_ms"] = round(
            median_ms(partial(predictor.prepare, photos[row["photo"]]), budget_s=budget_s), 2
        )
        row["megapixels"] = round(row["size"][0] * row["size"][1] / 1e6, 1)
    return rows


MIN_BATCHES = 6
"""Model calls a rate is measured over at least, whatever the window: at a few hundred ms per
call, a window of a second or two holds 2 to 4 calls, and counting whole calls inside it moved the
figure by up to half (a quick run read 21 photos/s overlapped against 43 sequential)."""


class _Rate:
    """Photos per second between model calls: from the end of the first call after the warm-up
    to the end of the last one counted, running until ``seconds`` have passed and at least
    :data:`MIN_BATCHES` calls were counted (so no partial call is counted or left out)."""

    def __init__(self, seconds: float, warmup_s: float) -> None:
        self.seconds = seconds
        self.start = time.perf_counter() + warmup_s
        self.t0: float | None = None  # end of the first call after the warm-up
        self.t1 = 0.0
        self.photos = 0
        self.sizes: list[int] = []

    def running(self) -> bool:
        return self.t0 is None or len(self.sizes) < MIN_BATCHES or self.t1 - self.t0 < self.seconds

    def done(self, n: int) -> None:
        """A model call of ``n`` photos just ended."""
        now = time.perf_counter()
        if self.t0 is None:
            if now >= self.start:
                self.t0 = now
            return
        self.t1 = now
        self.photos += n
        self.sizes.append(n)

    def photos_per_s(self) -> float:
        return round(self.photos / (self.t1 - self.t0), 1) if self.t0 is not None and self.sizes else 0.0


def overlapped_rate(
    predictor: Predictor, photo: bytes, *, seconds: float, warmup_s: float, workers: int, batch: int
) -> dict[str, Any]:
    """Photos per second with decoding and the model overlapped (see the module docstring)."""
    q: queue.Queue[np.ndarray] = queue.Queue(maxsize=4 * batch)
    stop = threading.Event()

    def decoder() -> None:
        while not stop.is_set():
            pixels = predictor.prepare(photo).pixels
            while not stop.is_set():
                try:
                    q.put(pixels, timeout=0.05)
                    break
                except queue.Full:
                    continue

    threads = [threading.Thread(target=decoder, daemon=True) for _ in range(workers)]
    for t in threads:
        t.start()
    rate = _Rate(seconds, warmup_s)
    try:
        while rate.running():
            items = [q.get(timeout=60)]  # queue.Empty if every decoder died
            while len(items) < batch:
                try:
                    items.append(q.get_nowait())
                except queue.Empty:
                    break
            predictor.infer(np.stack(items))
            rate.done(len(items))
    finally:
        stop.set()
        for t in threads:
            t.join()
    return {
        "photos_per_s": rate.photos_per_s(),
        "mean_batch": round(float(np.mean(rate.sizes)), 1) if rate.sizes else 0.0,
        "batches": len(rate.sizes),
    }


def sequential_rate(
    predictor: Predictor, photo: bytes, *, seconds: float, warmup_s: float, workers: int, batch: int
) -> dict[str, Any]:
    """Photos per second decoding a batch on ``workers`` threads, then running it: not overlapped."""
    rate = _Rate(seconds, warmup_s)
    with ThreadPoolExecutor(workers) as pool:
        while rate.running():
            pixels = [p.pixels for p in pool.map(predictor.prepare, [photo] * batch)]
            predictor.infer(np.stack(pixels))
            rate.done(batch)
    return {"photos_per_s": rate.photos_per_s(), "batches": len(rate.sizes)}


def thread_grid(cores: int) -> list[tuple[int, int]]:
    """``(ONNX Runtime threads, decoding threads)`` tried for the ceiling: one or all cores each."""
    counts = sorted({1, cores})
    return [(t, d) for t in counts for d in counts]


def ceiling_section(
    predictor_for: Callable[[int], Predictor],
    photos: dict[str, bytes],
    decode_rows: list[dict[str, Any]],
    model: dict[str, Any] | None,
    *,
    seconds: float,
    warmup_s: float,
    batch: int,
) -> list[dict[str, Any]]:
    """Section 3 for each photo: overlapped photos per second at each thread split of
    :func:`thread_grid` (the best is the ceiling: running the model and the decoders on every core
    at once oversubscribes them), sequential photos per second, and the compute limits with fp32
    and INT8 (from section 2's ``prepare`` and section 1's one-thread costs).

    Args:
        predictor_for: A warmed predictor of the bundle with that many ONNX Runtime threads.
    """
    cores = os.cpu_count() or 1
    prepare = {r["photo"]: r["prepare_ms"] for r in decode_rows}
    engines = (model or {}).get("graphs", {}).get("bundle", {}).get("engines", {})
    predictors = {t: predictor_for(t) for t in sorted({t for t, _ in thread_grid(cores)})}
    rows = []
    for name, photo in photos.items():
        row: dict[str, Any] = {"photo": name, "batch": batch, "graph": "fp32", "grid": []}
        for ort_threads, decoders in thread_grid(cores):
            r = overlapped_rate(
                predictors[ort_threads],
                photo,
                seconds=seconds,
                warmup_s=warmup_s,
                workers=decoders,
                batch=batch,
            )
            row["grid"].append({"ort_threads": ort_threads, "decoders": decoders, **r})
        row["overlapped"] = max(row["grid"], key=lambda r: r["photos_per_s"])
        row["sequential"] = {
            "ort_threads": cores,
            "decoders": cores,
            **sequential_rate(
                predictors[cores], photo, seconds=seconds, warmup_s=warmup_s, workers=cores, batch=batch
            ),
        }
        if name in prepare:
            row["prepare_ms"] = prepare[name]
            for precision in ("fp32", "int8"):
                model_ms = engines.get(f"onnxruntime_{precision}", {}).get("one_thread_ms_per_photo")
                if model_ms:
                    row[f"model_ms_one_thread_{precision}"] = model_ms
                    row[f"compute_limit_{precision}"] = round(cores * 1000 / (prepare[name] + model_ms), 1)
        rows.append(row)
    return rows
