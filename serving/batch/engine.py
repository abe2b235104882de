"""The Ray Data pipeline of ``authlens score --engine ray``: items -> scoring actors -> part files.

Each scoring actor (one CPU) loads and verifies the bundle once, then scores batches of items with
:func:`serving.offline.judge_items`, the code behind ``authlens score``, so the lines are the same.
Reading dumps and writing parts are I/O: those tasks ask for no CPU, so actors holding every CPU
of the cluster never starve them. Photos of one item in a dump of bytes are gathered by a Ray Data
shuffle that finishes (``materialize``) before the actors start, for the same reason.
"""

from __future__ import annotations

import functools
import logging
import os
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import ray
from ray.data import ActorPoolStrategy, DataContext, Dataset

from model.imaging import ImageError
from model.logs import log_event
from serving.batch.parts import Format, PartSink, done_ids
from serving.batch.sources import Dump, Item, is_uri, plan_inputs
from serving.core.config import MAX_PHOTOS_PER_ITEM
from serving.offline import LoadedItem, Summary, dump_line, judge_items, load_photo, prepare
from serving.predictor import Predictor
from serving.receipts import ReceiptSigner, load_private_key

log = logging.getLogger(__name__)

MAX_PIXELS = 50_000_000  # as authlens score
ITEM_SCHEMA = pa.schema(
    [("item_id", pa.string()), ("files", pa.list_(pa.string())), ("images", pa.list_(pa.binary()))]
)


def local_bundle(bundle: str) -> Path:
    """The bundle as a local folder: copied once from a URI (then verified like any other)."""
    if not is_uri(bundle):
        return Path(bundle)
    dst = tempfile.mkdtemp(prefix="authlens-bundle-")
    pafs.copy_files(bundle, dst)
    return Path(dst)


class Scorer:
    """A Ray Data actor: the predictor loaded and verified once, then batches of items scored.

    A batch is an Arrow table of ``item_id``, ``files`` and ``images`` (bytes, or null to read
    ``files``); the answer has one ``line`` (JSON text) per item, in order.
    """

    def __init__(
        self, *, bundle: str, cwd: str, int8: bool, explain: bool, receipt_key: str | None, run_id: str
    ) -> None:
        self.predictor = Predictor.load(local_bundle(bundle), int8=int8, threads=1, max_pixels=MAX_PIXELS)
        self.predictor.warmup()
        key = load_private_key(Path(receipt_key)) if receipt_key else None
        self.signer = ReceiptSigner(key, ephemeral=False) if key else None
        self.cwd, self.explain, self.run_id = Path(cwd), explain, run_id
        self._fs: dict[str, tuple[pafs.FileSystem, int]] = {}  # scheme://authority -> (fs, prefix length)

    def _read(self, uri: str) -> bytes:
        scheme, rest = uri.split("://", 1)
        key = f"{scheme}://{rest.split('/', 1)[0]}"
        if key not in self._fs:  # one filesystem per bucket or host (S3 looks a bucket's region up once)
            fs, inner = pafs.FileSystem.from_uri(uri)
            self._fs[key] = (fs, len(uri) - len(inner))
        fs, prefix = self._fs[key]
        with fs.open_input_stream(uri[prefix:]) as f:
            return f.read()

    def _photo(self, file: str, data: bytes | None) -> Any:
        if data is None and not is_uri(file):  # authlens score's reading, from the driver's directory
            return load_photo(self.predictor, self.cwd / file, self.explain)
        if data is None:
            try:
                data = self._read(file)
            except OSError as exc:
                return ImageError(f"cannot be read ({exc}).")
        return prepare(self.predictor, data, self.explain)

    def __call__(self, batch: pa.Table) -> dict[str, list[str]]:
        rows = batch.to_pylist()
        loaded: list[LoadedItem] = []
        oversized: dict[int, dict[str, Any]] = {}
        for i, row in enumerate(rows):
            files = row["files"]
            if len(files) > MAX_PHOTOS_PER_ITEM:
                message = f"The item has {len(files)} photos; an item has at most {MAX_PHOTOS_PER_ITEM}."
                error = {"code": "too_many_photos", "message": message}
                oversized[i] = {"item_id": row["item_id"], "files": files, "error": error}
                continue
            images = row["images"] or [None] * len(files)
            photos = [self._photo(f, d) for f, d in zip(files, images, strict=True)]
            loaded.append(LoadedItem(row["item_id"], files, photos))
        judged = iter(judge_items(self.predictor, loaded, request_id=self.run_id, signer=self.signer))
        lines = [oversized[i] if i in oversized else next(judged) for i in range(len(rows))]
        return {"line": [dump_line(x) for x in lines]}


# ----------------------------------------------------------------------------- dumps of bytes


def _photo_rows(batch: pa.Table, *, done: Any) -> pa.Table:
    """One-photo-per-row dump rows as ``item_id``, ``file``, ``image``; items already written dropped."""
    n = batch.num_rows
    files = batch.column("file").to_pylist()
    ids = batch.column("item_id").to_pylist() if "item_id" in batch.column_names else [None] * n
    ids = [i or f for i, f in zip(ids, files, strict=True)]
    skip = _resolve(done)
    keep = pa.array([k for k in range(n) if ids[k] not in skip], pa.int64())
    return pa.table(
        {"item_id": pa.array(ids, pa.string()), "file": batch.column("file"), "image": batch.column("image")}
    ).take(keep)


def _one_item(batch: pa.Table) -> pa.Table:
    """The rows of one ``item_id`` as one item, photos ordered by ``file``."""
    rows = sorted(batch.to_pylist(), key=lambda r: r["file"])
    item = {
        "item_id": rows[0]["item_id"],
        "files": [r["file"] for r in rows],
        "images": [r["image"] for r in rows],
    }
    return pa.Table.from_pylist([item], schema=ITEM_SCHEMA)


def _singles(batch: pa.Table) -> pa.Table:
    rows = [
        {"item_id": r["item_id"], "files": [r["file"]], "images": [r["image"]]} for r in batch.to_pylist()
    ]
    return pa.Table.from_pylist(rows, schema=ITEM_SCHEMA)


def _not_done(batch: pa.Table, *, done: Any) -> pa.Table:
    skip = _resolve(done)
    ids = batch.column("item_id").to_pylist()
    return batch.select(["item_id", "files", "images"]).take(
        pa.array([k for k, i in enumerate(ids) if i not in skip], pa.int64())
    )


_DONE: dict[str, set[str]] = {}


def _resolve(done: Any) -> set[str]:
    """The done-id set behind an object reference, fetched once per worker process."""
    key = done.hex()
    if key not in _DONE:
        _DONE[key] = ray.get(done)
    return _DONE[key]


def _dump_items(dump: Dump, done: Any, partitions: int) -> Dataset:
    read = ray.data.read_parquet(dump.files, num_cpus=0).select_columns(dump.columns)
    if dump.per_item:
        return read.map_batches(functools.partial(_not_done, done=done), batch_format="pyarrow", num_cpus=0)
    photos = read.map_batches(functools.partial(_photo_rows, done=done), batch_format="pyarrow", num_cpus=0)
    if not dump.grouped:
        return photos.map_batches(_singles, batch_format="pyarrow", num_cpus=0)
    grouped = photos.groupby("item_id", num_partitions=partitions).map_groups(
        _one_item, batch_format="pyarrow"
    )
    return grouped.materialize()  # before the actors take the CPUs the shuffle runs on


# ----------------------------------------------------------------------------- the run


def _connect(address: str | None) -> bool:
    """Join a Ray cluster (``address``, else ``RAY_ADDRESS``) or start one here; True if started here."""
    if ray.is_initialized():
        return False
    if address or os.environ.get("RAY_ADDRESS"):
        ray.init(address=address, logging_level=logging.WARNING)
    else:
        ray.init(include_dashboard=False, logging_level=logging.WARNING)
    return True


def _listed(items: Sequence[Item], workers: int, batch_size: int) -> Dataset:
    """Items listed on the driver, in blocks small enough to keep every actor busy."""
    rows = max(batch_size, min(512, -(-len(items) // (workers * 4))))
    tables = [
        pa.Table.from_pylist(
            [{"item_id": it.item_id, "files": it.files, "images": None} for it in items[i : i + rows]],
            schema=ITEM_SCHEMA,
        )
        for i in range(0, len(items), rows)
    ]
    return ray.data.from_arrow(tables)


def score_with_ray(
    bundle: str,
    paths: Sequence[str],
    out: str,
    *,
    fmt: Format = "jsonl",
    address: str | None = None,
    workers: int | None = None,
    batch_size: int = 16,
    one_item: bool = False,
    explain: bool = False,
    int8: bool = False,
    receipt_key: str | None = None,
    progress: bool = True,
) -> Summary:
    """Score photos on Ray and write part files under ``out``; returns this run's counts.

    Args:
        bundle: Bundle folder (the same path on every node) or a URI every node can read.
        paths: Photos, folders, CSV/JSONL manifests or Parquet dumps (paths or URIs).
        out: Output folder (path or URI); items already written there are skipped.
        fmt: ``jsonl`` or ``parquet`` part files.
        address: Ray cluster (``ray://head:10001``, ``auto``); default ``RAY_ADDRESS``, else a
            Ray instance started on this machine for the run.
        workers: Scoring actors, one CPU each; default one per CPU of the cluster.
        batch_size: Items per actor call (one model call).
        one_item: All given photos are one item.
        explain: Include evidence overlays (large rows).
        int8: Score with the bundle's INT8 graph.
        receipt_key: Ed25519 PEM key signing item results (the same path on every node).
        progress: Show Ray Data's progress bars.

    Raises:
        InputError: nothing to score, a missing path, a Parquet file of another shape, a
            mixed-format ``out``.
    """
    inputs = plan_inputs(paths, one_item=one_item)
    done = done_ids(out, fmt)
    todo = [it for it in inputs.items if it.item_id not in done]
    skipped = len(inputs.items) - len(todo)
    if not todo and not inputs.dumps:
        return Summary(skipped=skipped)
    started = _connect(address)
    try:
        DataContext.get_current().enable_progress_bars = progress
        workers = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
        run_id = time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
        t0 = time.perf_counter()
        sources = [_listed(todo, workers, batch_size)] if todo else []
        if inputs.dumps:
            done_ref = ray.put(done)
            sources += [_dump_items(d, done_ref, partitions=workers * 2) for d in inputs.dumps]
        scored = sources[0].union(*sources[1:]) if len(sources) > 1 else sources[0]
        scored = scored.map_batches(
            Scorer,
            compute=ActorPoolStrategy(size=workers),
            batch_size=batch_size,
            batch_format="pyarrow",
            num_cpus=1,
            fn_constructor_kwargs={
                "bundle": bundle if is_uri(bundle) else os.path.abspath(bundle),
                "cwd": os.getcwd(),
                "int8": int8,
                "explain": explain,
                "receipt_key": None if receipt_key is None else os.path.abspath(receipt_key),
                "run_id": f"ray-{run_id}",
            },
        )
        sink = PartSink(out, fmt, run_id, rows_per_part=max(batch_size, 256))
        scored.write_datasink(sink, ray_remote_args={"num_cpus": 0})  # I/O: no CPU
        summary = sink.summary
        summary.seconds, summary.skipped = time.perf_counter() - t0, skipped
        log_event(
            log,
            "ray_score_done",
            items=summary.items,
            images=summary.images,
            errors=summary.errors,
            skipped=skipped,
            workers=workers,
            seconds=round(summary.seconds, 2),
        )
        return summary
    finally:
        if started:
            ray.shutdown()
