"""``authlens score --engine ray``: batch scoring on a Ray cluster with Ray Data, through the API's predictor.

Usage: ``authlens score --engine ray [--address ray://head:10001] --bundle bundles/demo photos/ --out scores/``

It reads local paths, or URIs that pyarrow's filesystems open (``s3://``, ``gs://``, ``abfs://``,
``hdfs://``, ``file://``): folders, photos and CSV/JSONL manifests as ``authlens score`` does,
and Parquet crawler dumps (:mod:`~serving.batch.sources`). Scoring actors load and verify the bundle
once and call the code behind ``authlens score``, so each line equals its line for the same bytes,
receipts aside (:mod:`~serving.batch.engine`). A photo that cannot be used makes its item's line
an ``error`` with a code, never a failed job. Lines go to part files, JSONL or Parquet, each
complete or absent; a re-run skips the items already written (:mod:`~serving.batch.parts`).
"""

from serving.batch.engine import score_with_ray
from serving.batch.parts import done_ids, line_schema, read_lines
from serving.batch.sources import is_uri, plan_inputs

__all__ = ["done_ids", "is_uri", "line_schema", "plan_inputs", "read_lines", "score_with_ray"]
