"""Where each part of a product sits, per category: the layout table and its placement in pixels.

Every category is one :class:`CategoryLayout` entry of :data:`LAYOUTS`, in fractions of the flat
drawing (x of its width, y of its height); :func:`place` turns an entry and an item's layout
jitter into pixel geometry. A new category is one entry (appended: item specs draw categories by
their position in the table).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Rect = tuple[float, float, float, float]
"""``(x0, y0, x1, y1)`` in pixels of the flat drawing (or of the photo, for boxes)."""

Jitter = tuple[int, float] | None
"""``(k, factor)``: shift by ``factor * jitter[k]`` (fractions, see ``ItemSpec.jitter``); ``None``: fixed."""


@dataclass(frozen=True)
class RectAt:
    """A rectangle in fractions of the flat drawing, optionally shifted by the item's jitter."""

    x0: float
    y0: float
    x1: float
    y1: float
    dx: Jitter = None
    dy: Jitter = None


@dataclass(frozen=True)
class LogoAt:
    """The logo's centre (fractions, optionally jittered), lettering height and kind."""

    cx: float
    cy: float
    px: float  # cap height, fraction of the width
    kind: str  # plate (engraved metal) | stamp (embossed in the leather)
    initials_only: bool
    dx: Jitter = None
    dy: Jitter = None


@dataclass(frozen=True)
class PieceAt:
    """One piece of metal hardware: kind (ring | snap | buckle), centre and size (fractions)."""

    kind: str
    cx: float
    cy: float
    width: float  # fraction of the width
    height: float  # fraction of the width if ``square_units`` else of the height
    dx: Jitter = None
    dy: Jitter = None
    square_units: bool = True


@dataclass(frozen=True)
class CategoryLayout:
    """Everything about one product category's drawing and framing."""

    aspect: float  # height / width of the flat drawing
    framing: tuple[float, float]  # range of the product's width as a fraction of the photo
    body: tuple[tuple[float, float], ...]  # polygon (or corners of a rounded rectangle)
    body_radius: float  # corner radius, fraction of the width; 0 = polygon
    handle: tuple[float, float, float, float, float] | None  # cx, cy, ax, ay (fractions), thickness (of w)
    trim: RectAt  # the leather trim piece
    panel: RectAt  # the pocket cut from monogram canvas
    seams: tuple[tuple[tuple[float, float], ...], ...]  # stitched polylines (fractions)
    panel_seam: bool  # also a stitched seam around the panel
    logo: LogoAt
    hardware: tuple[PieceAt, ...]
    tag: RectAt  # the leather tag with the origin and serial
    trim_wraps: bool = False  # the trim sticks out of the body (a belt's keeper loop round the strap)


LAYOUTS: dict[str, CategoryLayout] = {
    "handbag": CategoryLayout(
        aspect=0.85,
        framing=(0.55, 0.92),
        body=((0.14, 0.24), (0.86, 0.24), (0.97, 0.90), (0.955, 0.955), (0.91, 0.985), (0.09, 0.985),
              (0.045, 0.955), (0.03, 0.90)),
        body_radius=0.0,
        handle=(0.5, 0.245, 0.22, 0.21, 0.034),
        trim=RectAt(0.11, 0.24, 0.89, 0.335),
        panel=RectAt(0.27, 0.56, 0.73, 0.88, dx=(0, 1.0), dy=(1, 1.0)),
        seams=(((0.16, 0.318), (0.84, 0.318)),),
        panel_seam=True,
        logo=LogoAt(0.5, 0.445, 0.046, "plate", False, dx=(2, 1.0), dy=(3, 1.0)),
        hardware=(PieceAt("ring", 0.28, 0.245, 0.062, 0.062), PieceAt("ring", 0.72, 0.245, 0.062, 0.062)),
        tag=RectAt(0.09, 0.60, 0.245, 0.745, dx=(4, 0.5), dy=(5, 1.0)),
    ),
    "wallet": CategoryLayout(
        aspect=0.58,
        framing=(0.6, 0.95),
        body=((0.02, 0.04), (0.98, 0.04), (0.98, 0.96), (0.02, 0.96)),
        body_radius=0.04,
        handle=None,
        trim=RectAt(0.02, 0.04, 0.98, 0.205),
        panel=RectAt(0.06, 0.30, 0.46, 0.86, dx=(0, 1.0), dy=(1, 1.0)),
        seams=(((0.04, 0.19), (0.96, 0.19)), ((0.04, 0.925), (0.96, 0.925))),
        panel_seam=True,
        logo=LogoAt(0.5, 0.12, 0.05, "stamp", False, dx=(2, 1.0)),
        hardware=(PieceAt("snap", 0.76, 0.5, 0.085, 0.085, dx=(3, 1.0), dy=(6, 1.0)),),
        tag=RectAt(0.56, 0.68, 0.92, 0.87, dx=(4, 1.0), dy=(5, 0.5)),
    ),
    "cardholder": CategoryLayout(
        aspect=0.66,
        framing=(0.55, 0.9),
        body=((0.03, 0.03), (0.97, 0.03), (0.97, 0.97), (0.03, 0.97)),
        body_radius=0.035,
        handle=None,
        trim=RectAt(0.03, 0.79, 0.97, 0.97),
        panel=RectAt(0.08, 0.10, 0.92, 0.42, dx=(0, 1.0), dy=(1, 0.5)),
        seams=(((0.05, 0.81), (0.95, 0.81)),),
        panel_seam=True,
        logo=LogoAt(0.5, 0.89, 0.048, "stamp", False, dx=(2, 1.0)),
        hardware=(PieceAt("ring", 0.84, 0.6, 0.075, 0.075, dx=(3, 1.0), dy=(6, 1.0)),),
        tag=RectAt(0.10, 0.50, 0.50, 0.72, dx=(4, 1.0), dy=(5, 0.5)),
    ),
    "belt": CategoryLayout(
        aspect=0.30,
        framing=(0.8, 1.05),
        body=((0.16, 0.2), (0.93, 0.2), (0.985, 0.5), (0.93, 0.8), (0.16, 0.8)),
        body_radius=0.0,
        handle=None,
        trim=RectAt(0.22, 0.1, 0.29, 0.9),  # the keeper loop, wrapped around the strap
        panel=RectAt(0.33, 0.28, 0.55, 0.72, dx=(0, 0.5)),
        seams=(((0.30, 0.25), (0.92, 0.25)), ((0.30, 0.75), (0.92, 0.75))),
        panel_seam=False,
        logo=LogoAt(0.645, 0.5, 0.05, "plate", True, dx=(2, 0.5)),
        hardware=(PieceAt("buckle", 0.105, 0.5, 0.17, 0.92, square_units=False),),
        tag=RectAt(0.745, 0.32, 0.885, 0.68, dx=(4, 0.5)),
        trim_wraps=True,
    ),
}  # fmt: skip

CATEGORIES: tuple[str, ...] = tuple(LAYOUTS)
ASPECT: dict[str, float] = {name: lay.aspect for name, lay in LAYOUTS.items()}
"""Height / width of each category's flat drawing."""
FRAMING: dict[str, tuple[float, float]] = {name: lay.framing for name, lay in LAYOUTS.items()}
"""Range of the product's width as a fraction of the photo (a photo's pose picks a point in it)."""


@dataclass
class Placement:
    """A category's layout placed on one item's flat drawing, in pixels."""

    body: np.ndarray  # (N, 2) float32 polygon
    body_radius: float
    handle: tuple[float, float, float, float, float] | None  # cx, cy, ax, ay, thickness
    trim: Rect
    panel: Rect
    seams: list[list[tuple[float, float]]]
    logo: tuple[float, float, float, str, bool]  # cx, cy, text px, kind (plate|stamp), initials only
    hardware: list[tuple[str, float, float, float, float]]  # kind, cx, cy, w, h
    tag: Rect
    trim_wraps: bool


def _shift(jitter: tuple[float, ...], at: Jitter) -> float:
    # ``j * 1.0`` and ``v + 0.0`` are exact, so a table entry gives the same floats as literal code.
    return 0.0 if at is None else jitter[at[0]] * at[1]


def _rect(r: RectAt, jitter: tuple[float, ...], w: int, h: int) -> Rect:
    dx, dy = _shift(jitter, r.dx), _shift(jitter, r.dy)
    return (r.x0 + dx) * w, (r.y0 + dy) * h, (r.x1 + dx) * w, (r.y1 + dy) * h


def _box_seam(r: Rect, inset: float) -> list[tuple[float, float]]:
    """A closed polyline ``inset`` pixels inside ``r``."""
    x0, y0, x1, y1 = r[0] + inset, r[1] + inset, r[2] - inset, r[3] - inset
    return [(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)]


def _piece(p: PieceAt, jitter: tuple[float, ...], w: int, h: int) -> tuple[str, float, float, float, float]:
    cx = (p.cx + _shift(jitter, p.dx)) * w
    cy = (p.cy + _shift(jitter, p.dy)) * h
    return p.kind, cx, cy, p.width * w, p.height * (w if p.square_units else h)


def place(category: str, jitter: tuple[float, ...], w: int, h: int) -> Placement:
    """Place ``category``'s layout on a ``w`` x ``h`` flat drawing.

    Args:
        category: A key of :data:`LAYOUTS`.
        jitter: The item's layout offsets (``ItemSpec.jitter``, fractions of the width).
        w: Flat width in pixels.
        h: Flat height in pixels.

    Returns:
        The pixel geometry of every part.
    """
    lay = LAYOUTS[category]
    panel = _rect(lay.panel, jitter, w, h)
    seams = [[(fx * w, fy * h) for fx, fy in seam] for seam in lay.seams]
    if lay.panel_seam:
        seams.append(_box_seam(panel, 0.016 * w))
    handle = None
    if lay.handle is not None:
        cx, cy, ax, ay, thick = lay.handle
        handle = (cx * w, cy * h, ax * w, ay * h, thick * w)
    logo = lay.logo
    return Placement(
        body=np.array([(fx * w, fy * h) for fx, fy in lay.body], np.float32),
        body_radius=lay.body_radius * w,
        handle=handle,
        trim=_rect(lay.trim, jitter, w, h),
        panel=panel,
        seams=seams,
        logo=(
            (logo.cx + _shift(jitter, logo.dx)) * w,
            (logo.cy + _shift(jitter, logo.dy)) * h,
            logo.px * w,
            logo.kind,
            logo.initials_only,
        ),
        hardware=[_piece(p, jitter, w, h) for p in lay.hardware],
        tag=_rect(lay.tag, jitter, w, h),
        trim_wraps=lay.trim_wraps,
    )
