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
    begin = time.perf_counter()
    lo, hi = begin + warmup_s, begin + warmup_s + seconds
    done, sizes = 0, []
    try:
        while time.perf_counter() < hi:
            items = [q.get(timeout=60)]  # queue.Empty if every decoder died
            while len(items) < batch:
                try:
                    items.append(q.get_nowait())
                except queue.Empty:
                    break
            predictor.infer(np.stack(items))
            if lo <= time.perf_counter() <= hi:
                done += len(items)
                sizes.append(len(items))
    finally:
        stop.set()
        for t in threads:
            t.join()
    return {
        "photos_per_s": round(done / seconds, 1),
        "mean_batch": round(float(np.mean(sizes)), 1) if sizes else 0.0,
    }


def sequential_rate(
    predictor: Predictor, photo: bytes, *, seconds: float, warmup_s: float, workers: int, batch: int
) -> dict[str, Any]:
    """Photos per second decoding a batch on ``workers`` threads, then running it: not overlapped."""
    with ThreadPoolExecutor(workers) as pool:
        begin = time.perf_counter()
        lo, hi = begin + warmup_s, begin + warmup_s + seconds
        done = 0
        while time.perf_counter() < hi:
            pixels = [p.pixels for p in pool.map(predictor.prepare, [photo] * batch)]
            predictor.infer(np.stack(pixels))
            if lo <= time.perf_counter() <= hi:
                done += batch
    return {"photos_per_s": round(done / seconds, 1)}


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
