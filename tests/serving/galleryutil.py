"""A test bundle whose OOD reference holds real embeddings, as a trained bundle's does.

The tiny bundle's OOD reference is random vectors; the gallery centres embeddings on that
reference's mean (:func:`serving.predictor.embedding_center`), which only means something when
the reference comes from photos. Here it is the embeddings of sneaker photos the tests never
use as references or queries.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from serverutil import copy_bundle

from model.bundle import MANIFEST_NAME, load_bundle, write_bundle
from model.ood import KnnOOD, l2_normalise, save_ood

HELD_OUT = slice(-60, None)  # the last 60 photos of the data set (sorted paths): the reference


def sneaker_files(sneakers_dir: Path) -> list[Path]:
    return sorted(sneakers_dir.glob("*/*.jpg"))


def bundle_with_photo_reference(src: Path, dst: Path, sneakers_dir: Path) -> Path:
    """Copy ``src`` to ``dst`` with ``ood.npz`` made of held-out sneaker photos' embeddings, re-sealed."""
    from serving.predictor import Predictor

    copy_bundle(src, dst)
    predictor = Predictor.load(dst, max_pixels=10**8)
    files = sneaker_files(sneakers_dir)[HELD_OUT]
    prepared = [predictor.prepare(f.read_bytes()) for f in files]
    raws = predictor.infer(np.stack([p.pixels for p in prepared]))
    reference = l2_normalise(np.stack([r.embedding for r in raws]))
    bundle = load_bundle(dst)
    save_ood(dst / bundle.manifest.ood.file, KnnOOD(reference=reference, k=2))
    data = json.loads((dst / MANIFEST_NAME).read_text(encoding="utf-8"))
    files_listed = data.pop("files")
    for key in ("schema_version", "content_sha256"):
        data.pop(key, None)
    extra = tuple(n for n in files_listed if n not in ("model.onnx", bundle.manifest.ood.file))
    write_bundle(dst, manifest_fields=data, extra_files=extra, strict=False)
    return dst
