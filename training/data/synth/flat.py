"""An item drawn flat: every part of :data:`~training.data.synth.parts.PARTS` with its tells, then shading."""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from model.flags import FLAG_INDEX
from training.data.synth.layout import Rect
from training.data.synth.parts import PARTS, Draft, new_draft
from training.data.synth.specs import ItemSpec, TellSpec, tell_rng
from training.data.synth.tells import TELLS


@dataclass
class FlatItem:
    """An item drawn flat: RGBA pixels, the product outline and each tell's region (flat pixels)."""

    rgba: np.ndarray  # (H, W, 4) uint8
    product: Rect
    tells: dict[str, Rect] = field(default_factory=dict)


def _tells_by_part(tells: list[TellSpec]) -> dict[str, list[TellSpec]]:
    """The tells to draw, grouped by the part they change, in flag order within a part."""
    by_part: dict[str, list[TellSpec]] = {}
    for t in sorted(tells, key=lambda t: FLAG_INDEX[t.name]):
        if t.name not in TELLS:
            raise KeyError(f"No drawing function for tell {t.name!r} (known: {', '.join(TELLS)}).")
        by_part.setdefault(TELLS[t.name].part, []).append(t)
    return by_part


def _finish(d: Draft) -> FlatItem:
    """Soft edge shading (puffed leather), then RGBA and the product's bounding rectangle."""
    w, h, rgb, alpha = d.w, d.h, d.rgb, d.alpha
    small = cv2.resize(alpha, (w // 4, h // 4), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), max(1.0, 0.012 * w))
    shade = 0.8 + 0.2 * cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    rgb *= shade[..., None]
    rgba = np.empty((h, w, 4), np.uint8)
    rgba[..., :3] = np.clip(rgb * 255.0 + 0.5, 0, 255).astype(np.uint8)
    rgba[..., 3] = np.clip(alpha * 255.0 + 0.5, 0, 255).astype(np.uint8)
    ys, xs = np.nonzero(rgba[..., 3] > 8)
    product = (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))
    return FlatItem(rgba=rgba, product=product, tells=d.regions)


def render_flat(spec: ItemSpec, width: int, active: frozenset[str] | None = None) -> FlatItem:
    """Draw an item flat at ``width`` pixels.

    Each part is planned, changed by its tells (:data:`~training.data.synth.tells.TELLS`) and
    painted over the parts before it; the category's layout table places every part.

    Args:
        spec: The item.
        width: Flat width in pixels (the photo size, so the item is never magnified much).
        active: Tells to draw; ``None`` draws all of ``spec.tells`` (an empty set draws none,
            which is how tests see the same item without its tells).

    Returns:
        RGBA pixels, the product rectangle and each drawn tell's region.

    Raises:
        KeyError: a tell of ``spec`` has no drawing function.
    """
    by_part = _tells_by_part([t for t in spec.tells if active is None or t.name in active])
    d = new_draft(spec, width)
    for part in PARTS:
        if part.plan is not None:
            part.plan(d)
        for t in by_part.get(part.name, ()):
            d.regions[t.name] = TELLS[t.name].draw(d, t, tell_rng(spec.seed, spec.index, t.name))
        part.draw(d)
    return _finish(d)
