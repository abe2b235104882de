"""Where the activation maps point: the report's ``localisation`` section.

Boxes are in original-photo pixels (as the manifest records them); maps live on the model
input's grid, so each map cell is mapped back through the photo's :class:`model.imaging.Geometry`.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from model.decision import map_box
from model.flags import FLAG_NAMES
from model.imaging import Geometry

Box = tuple[float, float, float, float]  # (x0, y0, x1, y1)


def _inside(point: tuple[float, float], box: Box) -> bool:
    return box[0] <= point[0] <= box[2] and box[1] <= point[1] <= box[3]


def _overlaps(a: Box, b: Box) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def target_boxes(record) -> tuple[str, list[Box]]:
    """The boxes the map should point into: tells when labelled, else the product."""
    tells = [(b.x0, b.y0, b.x1, b.y1) for b in record.boxes if b.name in FLAG_NAMES]
    if tells:
        return "tell", tells
    products = [(b.x0, b.y0, b.x1, b.y1) for b in record.boxes if b.name == "product"]
    return ("product", products) if products else ("none", [])


def to_model_input(box: Box, geometry: Geometry) -> Box:
    """An original-photo box in model-input pixels (the inverse of :meth:`Geometry.to_original`)."""
    g = geometry
    return (
        (box[0] / g.scale_x) + g.pad_x,
        (box[1] / g.scale_y) + g.pad_y,
        (box[2] / g.scale_x) + g.pad_x,
        (box[3] / g.scale_y) + g.pad_y,
    )


def localise(
    cam: np.ndarray, geometry: Geometry, input_size: tuple[int, int], boxes: list
) -> dict[str, float]:
    """Where the map's peak falls relative to ``boxes`` (original-photo pixels).

    Returns ``peak_in_box`` (the peak cell's centre is inside a box), ``cell_overlaps_box`` (the
    peak cell touches a box) and ``chance`` (share of cells whose centre is inside a box: what a
    peak placed at random would score).
    """
    _, peak = map_box(cam, input_size)
    px, py = geometry.to_original((peak[0], peak[1], peak[0], peak[1]))[:2]
    h, w = cam.shape
    ch, cw = input_size[0] / h, input_size[1] / w  # model pixels per map cell
    cell_x, cell_y = int(peak[0] // cw), int(peak[1] // ch)
    cell = geometry.to_original((cell_x * cw, cell_y * ch, (cell_x + 1) * cw, (cell_y + 1) * ch))
    inside = 0
    for y in range(h):
        for x in range(w):
            cx, cy = geometry.to_original(((x + 0.5) * cw, (y + 0.5) * ch, (x + 0.5) * cw, (y + 0.5) * ch))[
                :2
            ]
            inside += any(_inside((cx, cy), b) for b in boxes)
    return {
        "peak_in_box": float(any(_inside((px, py), b) for b in boxes)),
        "cell_overlaps_box": float(any(_overlaps(cell, b) for b in boxes)),
        "chance": inside / (h * w),
    }


def localisation_section(
    records: Sequence, labels: np.ndarray, cams: np.ndarray, geometries: Sequence[Geometry], image_size: int
) -> dict[str, Any]:
    """:func:`localise` averaged over the counterfeit photos that have boxes.

    Args:
        records: The evaluated records (their boxes).
        labels: ``(N,)`` 1 for counterfeit.
        cams: ``(N, h, w)`` counterfeit-evidence maps.
        geometries: Model input -> original photo, per record.
        image_size: Side of the square model input.
    """
    rows: list[dict[str, float]] = []
    kinds: Counter[str] = Counter()
    for i, r in enumerate(records):
        if labels[i] != 1:
            continue
        kind, boxes = target_boxes(r)
        if not boxes:
            continue
        kinds[kind] += 1
        rows.append(localise(cams[i], geometries[i], (image_size, image_size), boxes))
    return {
        "target": kinds.most_common(1)[0][0] if kinds else "none",
        "n": len(rows),
        **{
            k: float(np.mean([row[k] for row in rows])) if rows else math.nan
            for k in ("peak_in_box", "cell_overlaps_box", "chance")
        },
        "map_size": list(cams.shape[1:]),
    }
