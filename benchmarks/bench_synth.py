"""Measure the synthetic generator and the data checks on one core, and print JSON lines.

Usage: ``flock /tmp/authlens-heavy.lock python benchmarks/bench_synth.py --n 400 --sneakers ../shared/data/sneakers-nike``

Figures (photos per second, seconds) are for this machine and this process only: OpenCV runs
single-threaded and numpy has no threads for elementwise work, so one process uses one core.

* ``synth_render``: render + JPEG-encode in memory (what ``--workers`` multiplies).
* ``synth_generate``: ``authlens data synth`` end to end (files, manifest, contact sheet).
* ``validate`` / ``split``: ``authlens data validate`` and ``split_records`` on a real set.
* ``tell_visibility`` (``--visibility N``): per flag and subtlety third, the median change a tell
  makes inside its box at full size and at the 224 px model input (not a speed figure).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def _line(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


def main() -> None:
    import cv2

    from training.data.manifest import load_manifest
    from training.data.split import split_records
    from training.data.synth import encode_jpeg, generate, plan_items, synth_photo, tell_visibility
    from training.data.validate import validate_dataset

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=400, help="Photos per synth measurement.")
    parser.add_argument("--size", type=int, default=384)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3, help="Best of this many render runs.")
    parser.add_argument("--sneakers", type=Path, default=None, help="A real dataset to validate and split.")
    parser.add_argument("--visibility", type=int, default=0, help="Photos to measure tell visibility on.")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    machine = {"cpus": os.cpu_count(), "python": platform.python_version(), "opencv": cv2.__version__}

    plan = plan_items(args.n, args.seed)
    synth_photo(args.seed, 0, plan[0][0], args.size)  # fonts, motif tiles and noise banks, built once
    rates = []
    for repeat in range(args.repeats):
        start = time.perf_counter()
        for index, (item, _) in enumerate(plan):
            photo = synth_photo(args.seed + repeat, index, item, args.size)
            encode_jpeg(photo.pixels, photo.photo.jpeg_quality)
        rates.append(args.n / (time.perf_counter() - start))
    _line(
        bench="synth_render",
        size=args.size,
        n=args.n,
        photos_per_s_best=round(max(rates), 1),
        photos_per_s_runs=[round(r, 1) for r in rates],
        **machine,
    )

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        generate(Path(tmp) / "set", n=args.n, seed=args.seed, size=args.size)
        seconds = time.perf_counter() - start
        _line(
            bench="synth_generate",
            size=args.size,
            n=args.n,
            seconds=round(seconds, 2),
            photos_per_s=round(args.n / seconds, 1),
        )

    if args.sneakers is not None:
        start = time.perf_counter()
        report = validate_dataset(args.sneakers)
        seconds = time.perf_counter() - start
        _line(
            bench="validate",
            dataset=str(args.sneakers),
            photos=report.photos,
            seconds=round(seconds, 2),
            photos_per_s=round(report.photos / seconds, 1),
            duplicate_pairs=report.duplicate_pairs,
            duplicate_clusters=len(report.duplicate_clusters),
        )
        records = load_manifest(args.sneakers)
        start = time.perf_counter()
        split_records(records, val_fraction=0.15, test_fraction=0.15, seed=0)
        _line(
            bench="split",
            dataset=str(args.sneakers),
            photos=len(records),
            seconds=round(time.perf_counter() - start, 2),
        )

    if args.visibility:
        import numpy as np

        rows = tell_visibility(seed=args.seed, n=args.visibility, size=args.size)
        groups: dict[tuple[str, int], list[tuple[float, float]]] = {}
        for r in rows:
            third = min(2, int(r["subtlety"] * 3))
            groups.setdefault((r["flag"], third), []).append((r["change_full"], r["change_model"]))
        for (flag, third), values in sorted(groups.items()):
            v = np.array(values)
            _line(
                bench="tell_visibility",
                flag=flag,
                subtlety=["0-0.33", "0.33-0.67", "0.67-1"][third],
                tells=len(v),
                change_full=round(float(np.median(v[:, 0])), 1),
                change_224=round(float(np.median(v[:, 1])), 1),
            )


if __name__ == "__main__":
    main()
