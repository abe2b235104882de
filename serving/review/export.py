"""Confirmed decisions as training data: a manifest in the format ``training`` reads
(``datasets/README.md``), with the photos copied beside it.

Each photo is one row: ``label`` from the item's current decision (``confirmed_counterfeit`` →
``counterfeit``, ``confirmed_genuine`` → ``genuine``), ``item_id`` ``review-<id>`` so splits keep an
item's photos together, ``source`` = ``review`` (the evaluation report's per-source metrics), and
the listing's brand, category, marketplace, seller and the reviewer. A photo reused by several
items is listed once; one whose items were confirmed both ways is left out and counted.
"""

from __future__ import annotations

import csv
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from serving.review.casefile import EXT
from serving.review.service import photo_path
from serving.review.store import ReviewStore

LABELS = {"confirmed_counterfeit": "counterfeit", "confirmed_genuine": "genuine"}
COLUMNS = (
    "file",
    "label",
    "item_id",
    "brand",
    "category",
    "split",
    "flags",
    "source",
    "review_item",
    "marketplace",
    "seller_id",
    "reviewer",
)


@dataclass
class ExportSummary:
    """What an export wrote and left out."""

    manifest: Path
    photos: int = 0
    items: int = 0
    labels: dict[str, int] = field(default_factory=lambda: {"genuine": 0, "counterfeit": 0})
    missing_photos: int = 0
    conflicting_photos: int = 0


def export_reviews(store: ReviewStore, photos_dir: Path, out: Path) -> ExportSummary:
    """Write ``out/manifest.csv`` and ``out/photos/`` from the confirmed items of ``store``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "photos").mkdir(exist_ok=True)
    summary = ExportSummary(manifest=out / "manifest.csv")
    rows: dict[str, dict[str, str]] = {}
    conflicts: set[str] = set()
    items = store.decided(tuple(LABELS))
    for it in items:
        label = LABELS[it["status"]]
        used = False
        for p in it["photos"]:
            sha = p["sha256"]
            if sha in rows:
                if rows[sha]["label"] != label:
                    conflicts.add(sha)
                continue
            src = photo_path(photos_dir, sha)
            if not p["stored"] or not src.is_file():
                summary.missing_photos += 1
                continue
            name = f"photos/{sha}.{EXT.get(str(p['format']), 'bin')}"
            if not (out / name).exists():
                shutil.copyfile(src, out / name)
            rows[sha] = {
                "file": name,
                "label": label,
                "item_id": f"review-{it['id']}",
                "brand": it.get("brand") or "",
                "category": it.get("category") or "",
                "split": "",
                "flags": "",
                "source": "review",
                "review_item": str(it["id"]),
                "marketplace": it.get("marketplace") or "",
                "seller_id": it.get("seller_id") or "",
                "reviewer": it.get("decided_by") or "",
            }
            used = True
        summary.items += used
    kept = [r for sha, r in rows.items() if sha not in conflicts]
    summary.conflicting_photos = len(conflicts)
    with open(summary.manifest, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows(kept)
    summary.photos = len(kept)
    for r in kept:
        summary.labels[r["label"]] += 1
    return summary
