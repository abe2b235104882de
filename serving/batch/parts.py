"""What a batch run writes: part files of result lines (JSONL or Parquet), each complete or absent.

``OUT/part-<run>-<task>-<random>.jsonl`` (or ``.parquet``) holds one row per item with the fields
of ``authlens score``'s lines (:func:`serving.offline.judge_items`). A part is written under a
temporary name beginning with a dot and renamed when complete (object stores publish an upload
only when it completes), so the item ids in the parts are exactly what is done: a re-run skips
them (:func:`done_ids`).
"""

from __future__ import annotations

import json
import posixpath
import types
import typing
import uuid
from collections.abc import Iterable
from pathlib import PurePosixPath
from typing import Any, Literal

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from pydantic import BaseModel
from ray.data.block import BlockAccessor
from ray.data.datasource import Datasink, WriteResult

from serving.batch.sources import filesystem
from serving.offline import InputError, Summary
from serving.schemas import ErrorDetail, ImageResult, ItemResult, ModelRef

Format = Literal["jsonl", "parquet"]
PART_PREFIX = "part-"


def _arrow_type(annotation: Any) -> pa.DataType:
    """The Arrow type of a response-model field (free-form ``dict[str, Any]`` becomes JSON text)."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        (inner,) = [a for a in args if a is not type(None)]
        return _arrow_type(inner)
    if origin is Literal or annotation is str:
        return pa.string()
    if origin is list:
        return pa.list_(_arrow_type(args[0]))
    if origin is dict:
        return pa.string() if args[1] is Any else pa.map_(pa.string(), _arrow_type(args[1]))
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return pa.struct([pa.field(n, _arrow_type(f.annotation)) for n, f in annotation.model_fields.items()])
    return {bool: pa.bool_(), int: pa.int64(), float: pa.float64()}[annotation]


def line_schema() -> pa.Schema:
    """Parquet rows: the fields of a result line, typed from the API's response models.

    ``model``, ``item``, ``images`` and ``error`` are :class:`~serving.schemas.ModelRef`,
    :class:`~serving.schemas.ItemResult`, a list of :class:`~serving.schemas.ImageResult` and
    :class:`~serving.schemas.ErrorDetail` field for field; ``flag_scores`` is a map; a receipt's
    ``payload`` (free-form) is its JSON text.
    """
    return pa.schema(
        [
            ("item_id", pa.string()),
            ("files", pa.list_(pa.string())),
            ("model", _arrow_type(ModelRef)),
            ("item", _arrow_type(ItemResult)),
            ("images", pa.list_(_arrow_type(ImageResult))),
            ("error", _arrow_type(ErrorDetail)),
        ]
    )


def _to_row(line: dict[str, Any]) -> dict[str, Any]:
    receipt = (line.get("item") or {}).get("receipt")
    if receipt is None:
        return line
    return {
        **line,
        "item": {**line["item"], "receipt": {**receipt, "payload": json.dumps(receipt["payload"])}},
    }


def _from_row(row: dict[str, Any]) -> dict[str, Any]:
    line = {k: v for k, v in row.items() if v is not None}
    receipt = (line.get("item") or {}).get("receipt")
    if receipt is not None:
        receipt["payload"] = json.loads(receipt["payload"])
    return line


def parts(out: str, fmt: Format | None = None) -> list[str]:
    """Finished part files under ``out`` (paths within its filesystem), sorted.

    Raises:
        InputError: ``fmt`` is given and ``out`` holds parts of the other format.
    """
    fs, root = filesystem(out)
    if fs.get_file_info(root).type != pafs.FileType.Directory:
        return []
    names = sorted(
        f.base_name
        for f in fs.get_file_info(pafs.FileSelector(root))
        if f.type == pafs.FileType.File and f.base_name.startswith(PART_PREFIX)
    )
    other = [n for n in names if fmt is not None and not n.endswith(f".{fmt}")]
    if other:
        raise InputError(f"{out} holds {PurePosixPath(other[0]).name}: resume it with the same --format.")
    return [posixpath.join(root, n) for n in names]


def _jsonl(fs: pafs.FileSystem, part: str) -> list[dict[str, Any]]:
    with fs.open_input_stream(part) as f:
        return [json.loads(x) for x in f.read().decode("utf-8").splitlines() if x]


def read_lines(out: str) -> list[dict[str, Any]]:
    """Every result line under ``out`` (JSONL or Parquet parts), as ``authlens score`` writes lines."""
    fs, _ = filesystem(out)
    lines: list[dict[str, Any]] = []
    for part in parts(out):
        if part.endswith(".parquet"):
            table = pq.read_table(part, filesystem=fs)
            lines.extend(_from_row(r) for r in table.to_pylist(maps_as_pydicts="strict"))
        else:
            lines.extend(_jsonl(fs, part))
    return lines


def done_ids(out: str, fmt: Format) -> set[str]:
    """Item ids already written under ``out``: what a re-run skips."""
    fs, _ = filesystem(out)
    done: set[str] = set()
    for part in parts(out, fmt):
        if fmt == "parquet":
            done.update(pq.read_table(part, columns=["item_id"], filesystem=fs).column(0).to_pylist())
        else:
            done.update(x["item_id"] for x in _jsonl(fs, part))
    return done


class PartSink(Datasink[Summary]):
    """Writes each write task's lines (a ``line`` column of JSON text) to one part file; returns counts."""

    def __init__(self, out: str, fmt: Format, run_id: str, rows_per_part: int) -> None:
        self.out, self.fmt, self.run_id, self.rows_per_part = out, fmt, run_id, rows_per_part
        self.summary = Summary()

    @property
    def min_rows_per_write(self) -> int:
        return self.rows_per_part

    def on_write_start(self, schema: pa.Schema | None = None) -> None:
        fs, root = filesystem(self.out)
        fs.create_dir(root, recursive=True)

    def write(self, blocks: Iterable[Any], ctx: Any) -> Summary:
        text: list[str] = []
        for block in blocks:
            text.extend(BlockAccessor.for_block(block).to_arrow().column("line").to_pylist())
        summary = Summary()
        if not text:
            return summary
        lines = [json.loads(x) for x in text]
        for line in lines:
            summary.add(line)
        fs, root = filesystem(self.out)
        name = f"{PART_PREFIX}{self.run_id}-{ctx.task_idx:06d}-{uuid.uuid4().hex[:8]}.{self.fmt}"
        local = isinstance(fs, pafs.LocalFileSystem)
        final = posixpath.join(root, name)
        target = posixpath.join(root, f".{name}.tmp") if local else final
        with fs.open_output_stream(target) as f:
            if self.fmt == "jsonl":
                f.write(("\n".join(text) + "\n").encode("utf-8"))
            else:
                pq.write_table(pa.Table.from_pylist([_to_row(x) for x in lines], schema=line_schema()), f)
        if local:
            fs.move(target, final)
        return summary

    def on_write_complete(self, write_result: WriteResult[Summary]) -> None:
        for part in write_result.write_returns:
            self.summary.merge(part)
