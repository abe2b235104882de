"""The parts of a product, each planned then drawn on the flat item, in the order of :data:`PARTS`.

A part's *plan* decides what the genuine part looks like (a mask, a colour, stitch positions,
lettering) and stores it on the :class:`Draft`; the tells of that part (``training.data.synth.tells``)
then change the plan; the part's *draw* function paints the plan. Where each part sits comes
from the category's layout (``training.data.synth.layout``). Parts are drawn over each other in
table order, so reordering :data:`PARTS` changes the pixels.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import cv2
import numpy as np

from training.data.synth.draw import (
    cover,
    crop,
    metal,
    motif_unit,
    noise_bank,
    paint,
    rect_mask,
    text_mask,
    tiled,
)
from training.data.synth.layout import ASPECT, Placement, Rect, place
from training.data.synth.specs import BRANDS, Brand, Colour, ItemSpec


@dataclass
class PrintPlan:
    """The canvas's monogram print before it is painted."""

    pitch: int  # motif repeat / 2, pixels
    offset: tuple[int, int]  # motif phase (ox, oy), pixels
    mask: np.ndarray  # (h, w) float32 print coverage 0..1 (tells may rewrite regions of it)


@dataclass
class StitchPlan:
    """Every stitch of every seam: centre, direction, length, slant and offset."""

    pitch: float  # pixels between stitches
    thick: int  # thread width, pixels
    centres: list[tuple[float, float, float]]  # (x, y, seam direction in rad) per stitch
    seam_of: list[int]  # which seam each stitch is on
    seam_start: list[int]  # index of each seam's first stitch
    length: np.ndarray  # (N,) pixels
    slant: np.ndarray  # (N,) rad, added to the seam direction
    offsets: np.ndarray  # (N, 2) pixels off the seam line


@dataclass
class LogoPlan:
    """The logo's lettering: the genuine mask (for the plate's size) and the one to draw."""

    text: str
    px: int
    genuine: np.ndarray  # (h, w) float32
    mask: np.ndarray  # (h, w) float32; the genuine one unless a tell changed it


@dataclass
class SerialPlan:
    """The serial on the tag: where it goes and how it is lettered."""

    tag: tuple[int, int, int, int]  # the tag rectangle, whole pixels
    px: int  # font size of the serial
    text: str
    tracking: float
    hscale: float
    bitmap: bool
    dy: int  # baseline shift, pixels

    @property
    def centre_x(self) -> float:
        return (self.tag[0] + self.tag[2]) / 2

    @property
    def top(self) -> int:
        """Top of the serial's genuine line."""
        return round(self.tag[1] + 0.52 * (self.tag[3] - self.tag[1]))


@dataclass
class Draft:
    """An item being drawn flat: its geometry, its pixels so far and each part's plan.

    The plans (``print``, ``trim_colour``, ...) and the pixels (``rgb``, ``alpha``) are set by
    the parts as they run; ``regions`` collects each drawn tell's rectangle (flat pixels).
    """

    spec: ItemSpec
    brand: Brand
    w: int
    h: int
    lay: Placement
    grain_fine: np.ndarray  # (h, w) float32, unit variance: the canvas's weave
    grain_pebble: np.ndarray  # (h, w) float32, unit variance: leather grain
    regions: dict[str, Rect] = field(default_factory=dict)
    body_mask: np.ndarray = field(init=False)  # (h, w) float32
    alpha: np.ndarray = field(init=False)  # (h, w) float32 silhouette
    rgb: np.ndarray = field(init=False)  # (h, w, 3) float32 0..1
    print: PrintPlan = field(init=False)
    trim_colour: Colour = field(init=False)
    stitches: StitchPlan = field(init=False)
    logo: LogoPlan = field(init=False)
    dull: dict[int, tuple[float, np.random.Generator]] = field(init=False)  # piece -> dullness, pit rng
    serial: SerialPlan = field(init=False)


def new_draft(spec: ItemSpec, width: int) -> Draft:
    """An empty draft of ``spec`` ``width`` pixels wide (height from the category's aspect)."""
    w = width
    h = round(ASPECT[spec.category] * w)
    return Draft(
        spec=spec,
        brand=BRANDS[spec.brand],
        w=w,
        h=h,
        lay=place(spec.category, spec.jitter, w, h),
        grain_fine=crop(noise_bank(1024, "fine"), h, w, spec.grain_offset),
        grain_pebble=crop(noise_bank(1024, "pebble"), h, w, spec.grain_offset[::-1]),
    )


def panel_px(d: Draft) -> tuple[int, int, int, int]:
    """The panel (pocket) rectangle in whole pixels."""
    px0, py0, px1, py1 = (round(v) for v in d.lay.panel)
    return px0, py0, px1, py1


def piece_px(piece: tuple[str, float, float, float, float]) -> tuple[int, int, int, int]:
    """A hardware piece's top-left and size in whole pixels: ``(x0, y0, w, h)``."""
    _, cx, cy, w, h = piece
    return round(cx - w / 2), round(cy - h / 2), round(w), round(h)


# --------------------------------------------------------------------------- body and canvas


def draw_body(d: Draft) -> None:
    """The silhouette: the body polygon (or rounded rectangle); parts that stick out add to it."""
    lay = d.lay
    alpha8 = np.zeros((d.h, d.w), np.uint8)
    if lay.body_radius > 0:
        xs, ys = lay.body[:, 0], lay.body[:, 1]
        d.body_mask = rect_mask(d.h, d.w, (xs.min(), ys.min(), xs.max(), ys.max()), lay.body_radius)
    else:
        cv2.fillPoly(alpha8, [np.round(lay.body * 4).astype(np.int32)], 255, cv2.LINE_AA, 2)
        d.body_mask = alpha8.astype(np.float32) / 255.0
    d.alpha = d.body_mask.copy()


def plan_canvas(d: Draft) -> None:
    """The monogram print over the whole drawing; the panel repeats the body's pattern in phase."""
    pitch = max(8, round(0.06 * d.w))
    unit = motif_unit(d.spec.brand, pitch)
    ox = d.spec.pattern_offset[0] * 2 * pitch // 1000
    oy = d.spec.pattern_offset[1] * 2 * pitch // 1000
    d.print = PrintPlan(pitch, (ox, oy), tiled(unit, d.h, d.w, ox, oy).copy())


def draw_canvas(d: Draft) -> None:
    """Grained canvas, its print, and the panel's edge (a thin shadow where the leather turns)."""
    spec, grain_fine = d.spec, d.grain_fine
    rgb = np.empty((d.h, d.w, 3), np.float32)
    rgb[:] = np.asarray(spec.canvas, np.float32)
    rgb *= (1.0 + 0.05 * grain_fine)[..., None]
    pm = (0.92 * d.print.mask)[..., None]
    rgb *= 1.0 - pm
    rgb += pm * np.asarray(spec.print, np.float32) * (1.0 + 0.04 * grain_fine)[..., None]
    px0, py0, px1, py1 = panel_px(d)
    cv2.rectangle(rgb, (px0, py0), (px1 - 1, py1 - 1), tuple(0.55 * c for c in spec.canvas), 1, cv2.LINE_AA)
    d.rgb = rgb


# --------------------------------------------------------------------------- leather


def plan_trim(d: Draft) -> None:
    """The trim is the item's own (naturally varied) trim leather."""
    d.trim_colour = d.spec.trim


def draw_trim(d: Draft) -> None:
    """The leather trim piece, clipped to the body unless it wraps round it (a belt's keeper)."""
    trim_mask = rect_mask(d.h, d.w, d.lay.trim)
    if d.lay.trim_wraps:
        d.alpha = np.maximum(d.alpha, trim_mask)
    else:
        trim_mask *= d.body_mask
    leather = np.asarray(d.trim_colour, np.float32) * (1.0 + 0.035 * d.grain_pebble)[..., None]
    paint(d.rgb, trim_mask, leather, 0, 0)


def draw_handle(d: Draft) -> None:
    """A handbag's handle (an arc above the body), in the genuine trim colour."""
    if d.lay.handle is None:
        return
    cx, cy, ax, ay, thick = d.lay.handle
    hm = np.zeros((d.h, d.w), np.uint8)
    cv2.ellipse(hm, (round(cx * 4), round(cy * 4)), (round(ax * 4), round(ay * 4)), 0, 180, 360, 255,
                round(thick), cv2.LINE_AA, 2)  # fmt: skip
    hmf = hm.astype(np.float32) / 255.0
    hmf[round(cy) :, :] = 0
    handle_col = np.asarray(d.spec.trim, np.float32) * (1.0 + 0.035 * d.grain_pebble)[..., None] * 0.92
    paint(d.rgb, hmf, handle_col, 0, 0)
    d.alpha = np.maximum(d.alpha, hmf)


# --------------------------------------------------------------------------- seams


def _stitches(seam: list[tuple[float, float]], pitch: float) -> list[tuple[float, float, float]]:
    """Stitch centres and directions ``(x, y, angle)`` at ``pitch`` along a polyline."""
    out = []
    for (x0, y0), (x1, y1) in itertools.pairwise(seam):
        length = math.hypot(x1 - x0, y1 - y0)
        n = max(1, int(length // pitch))
        ang = math.atan2(y1 - y0, x1 - x0)
        for i in range(n):
            t = (i + 0.5) / n
            out.append((x0 + (x1 - x0) * t, y0 + (y1 - y0) * t, ang))
    return out


def plan_seams(d: Draft) -> None:
    """Regular stitches along every seam: the brand's length and slant, on the seam line."""
    spitch = 0.026 * d.w
    stitches: list[tuple[float, float, float]] = []
    seam_of: list[int] = []
    seam_start: list[int] = []
    for seam in d.lay.seams:
        seam_stitches = _stitches(seam, spitch)
        seam_of += [len(seam_start)] * len(seam_stitches)
        seam_start.append(len(stitches))
        stitches += seam_stitches
    d.stitches = StitchPlan(
        pitch=spitch,
        thick=max(1, round(0.0045 * d.w)),
        centres=stitches,
        seam_of=seam_of,
        seam_start=seam_start,
        length=np.full(len(stitches), 0.58 * spitch),
        slant=np.full(len(stitches), math.radians(d.brand.stitch_slant)),
        offsets=np.zeros((len(stitches), 2)),
    )


def draw_seams(d: Draft) -> None:
    """A pressed groove along each seam, then every stitch over the grooves."""
    groove = tuple(float(c) * 0.6 for c in d.spec.canvas)
    for seam in d.lay.seams:
        for (x0, y0), (x1, y1) in itertools.pairwise(seam):
            cv2.line(
                d.rgb,
                (round(x0 * 4), round(y0 * 4)),
                (round(x1 * 4), round(y1 * 4)),
                groove,
                1,
                cv2.LINE_AA,
                2,
            )
    st = d.stitches
    thread = np.asarray(d.brand.thread, np.float32)  # float32 on purpose: the colour drawn is its rounding
    for i, (x, y, a) in enumerate(st.centres):
        direction = a + st.slant[i]
        hx, hy = 0.5 * st.length[i] * math.cos(direction), 0.5 * st.length[i] * math.sin(direction)
        cx, cy = x + st.offsets[i, 0], y + st.offsets[i, 1]
        p0 = (round((cx - hx) * 4), round((cy - hy) * 4))
        p1 = (round((cx + hx) * 4), round((cy + hy) * 4))
        cv2.line(d.rgb, p0, p1, tuple(float(c) for c in thread), st.thick, cv2.LINE_AA, 2)


# --------------------------------------------------------------------------- logo


def plan_logo(d: Draft) -> None:
    """The brand's lettering (its initials where the layout says so) at the layout's size."""
    _, _, lpx, _, initials_only = d.lay.logo
    text = d.brand.initials if initials_only else d.brand.logo
    px = max(6, round(lpx))
    genuine = text_mask(text, px, 0.06 * px)
    d.logo = LogoPlan(text, px, genuine, genuine)


def logo_origin(d: Draft) -> tuple[int, int]:
    """Top-left of the lettering to draw (centred on the layout's logo centre)."""
    lcx, lcy = d.lay.logo[:2]
    mh, mw = d.logo.mask.shape
    return round(lcx - mw / 2), round(lcy - mh / 2)


def _draw_plate(d: Draft) -> None:
    """An engraved metal plate sized to the genuine lettering (a fake's text must fit it)."""
    lcx, lcy = d.lay.logo[:2]
    px, mask, metal_colour = d.logo.px, d.logo.mask, d.brand.metal
    gh, gw = d.logo.genuine.shape
    plate: Rect = (
        lcx - gw / 2 - 0.5 * px,
        lcy - gh / 2 - 0.45 * px,
        lcx + gw / 2 + 0.5 * px,
        lcy + gh / 2 + 0.45 * px,
    )
    pr = tuple(round(v) for v in plate)
    pw, ph = pr[2] - pr[0], pr[3] - pr[1]
    plate_metal = metal(ph, pw, metal_colour, np.random.default_rng([d.spec.seed, 4, d.spec.index]))
    pmask = rect_mask(ph, pw, (0, 0, pw, ph), 0.18 * ph)
    paint(d.rgb, pmask, plate_metal, pr[0], pr[1])
    cover(d.alpha, pmask, pr[0], pr[1])
    mx, my = logo_origin(d)
    paint(d.rgb, mask * 0.9, tuple(0.95 * c for c in metal_colour), mx, my + 1)
    paint(d.rgb, mask * 0.85, tuple(0.32 * c for c in metal_colour), mx, my)


def _draw_stamp(d: Draft) -> None:
    """Lettering embossed in the leather: a darker impression and a highlight on its lower edge."""
    mask = d.logo.mask
    mh, mw = mask.shape
    mx, my = logo_origin(d)
    base = d.rgb[max(my, 0) : my + mh, max(mx, 0) : mx + mw].copy()
    shadow = np.zeros((mh, mw, 3), np.float32)
    shadow[: base.shape[0], : base.shape[1]] = base * 0.55
    paint(d.rgb, mask * 0.9, shadow * 0.8, mx, my)
    # additive lift as well as gain, so a stamp on black leather still catches the light
    highlight = np.clip(shadow / 0.55 * 1.3 + 0.14, 0, 1)
    paint(d.rgb, mask * 0.55, highlight, mx + 1, my + 1)


LOGO_KINDS: dict[str, Callable[[Draft], None]] = {"plate": _draw_plate, "stamp": _draw_stamp}
"""How each kind of logo (``LogoAt.kind`` in the layout table) is drawn."""


def draw_logo(d: Draft) -> None:
    """The logo: an engraved plate or an embossed stamp, as the layout says."""
    LOGO_KINDS[d.lay.logo[3]](d)


# --------------------------------------------------------------------------- hardware


def _ring_shape(m: np.ndarray, pw: int, ph: int) -> None:
    cv2.circle(m, (pw * 2, ph * 2), round(pw * 1.6), 255, max(1, round(pw * 0.7)), cv2.LINE_AA)


def _snap_shape(m: np.ndarray, pw: int, ph: int) -> None:
    cv2.circle(m, (pw * 2, ph * 2), round(pw * 1.9), 255, -1, cv2.LINE_AA)


def _buckle_shape(m: np.ndarray, pw: int, ph: int) -> None:
    # frame, its opening, then the prong across it
    cv2.rectangle(m, (0, 0), (pw * 4 - 1, ph * 4 - 1), 255, -1)
    cv2.rectangle(m, (round(pw * 0.9), round(ph * 0.7)), (round(pw * 3.1), round(ph * 3.3)), 0, -1)
    cv2.rectangle(m, (round(pw * 1.4), round(ph * 1.85)), (pw * 4 - 1, round(ph * 2.15)), 255, -1)


PIECE_SHAPES: dict[str, Callable[[np.ndarray, int, int], None]] = {
    "ring": _ring_shape,
    "snap": _snap_shape,
    "buckle": _buckle_shape,
}
"""Each kind of hardware's outline, drawn white on a ``(4 ph, 4 pw)`` uint8 canvas (4x supersampled)."""


def plan_hardware(d: Draft) -> None:
    """Every piece is genuine (bright, unpitted) until a tell dulls one."""
    d.dull = {}


def _snap_groove(plate: np.ndarray, pw: int, ph: int) -> None:
    """Darken a groove ring on a snap's cap, in place (``plate`` is ``(ph, pw, 3)``)."""
    ring = np.zeros((ph * 4, pw * 4), np.uint8)
    cv2.circle(ring, (pw * 2, ph * 2), round(pw * 1.2), 255, max(1, round(pw * 0.18)), cv2.LINE_AA)
    plate *= 1.0 - 0.35 * (cv2.resize(ring, (pw, ph), interpolation=cv2.INTER_AREA) / 255.0)[..., None]


def draw_hardware(d: Draft) -> None:
    """Each metal piece: its shape, brushed metal (dulled and pitted if planned so), on top."""
    for k, piece in enumerate(d.lay.hardware):
        kind = piece[0]
        x0, y0, pw, ph = piece_px(piece)
        m = np.zeros((ph * 4, pw * 4), np.uint8)
        PIECE_SHAPES[kind](m, pw, ph)
        pmask = cv2.resize(m, (pw, ph), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
        dull, pits = d.dull.get(k, (0.0, None))
        rng = np.random.default_rng([d.spec.seed, 5, d.spec.index, k])
        plate = metal(ph, pw, d.brand.metal, rng, dull, pits)
        if kind == "snap":
            _snap_groove(plate, pw, ph)
        paint(d.rgb, pmask, plate, x0, y0)
        cover(d.alpha, pmask, x0, y0)


# --------------------------------------------------------------------------- serial tag


def plan_tag(d: Draft) -> None:
    """The genuine serial, in the tag's font at its size."""
    tg = tuple(round(v) for v in d.lay.tag)
    serial_px = max(7, round(0.3 * (tg[3] - tg[1])))
    d.serial = SerialPlan(
        tag=(tg[0], tg[1], tg[2], tg[3]),
        px=serial_px,
        text=d.spec.serial,
        tracking=0.08 * serial_px,
        hscale=1.0,
        bitmap=False,
        dy=0,
    )


def serial_mask(plan: SerialPlan) -> tuple[np.ndarray, int, int]:
    """The serial's lettering as planned and its top-left ``(mask, x, y)`` on the drawing."""
    sm = text_mask(plan.text, plan.px, round(plan.tracking, 2), 0, round(plan.hscale, 3), plan.bitmap)
    return sm, round(plan.centre_x - sm.shape[1] / 2), plan.top + plan.dy


def _tag_ink(tag: Colour) -> Colour:
    """Dark ink on a light tag, light ink on a dark one."""
    r, g, b = (0.25 * float(c) if float(np.mean(tag)) > 0.4 else min(1.0, 2.6 * float(c)) for c in tag)
    return r, g, b


def draw_tag(d: Draft) -> None:
    """The leather tag: its border, the origin line (shrunk to fit) and the serial."""
    brand, tg = d.brand, d.serial.tag
    tag_col = np.asarray(brand.tag, np.float32) * (1.0 + 0.05 * d.grain_pebble)[..., None]
    tag_mask = rect_mask(d.h, d.w, d.lay.tag, 0.08 * (tg[3] - tg[1]))
    paint(d.rgb, tag_mask, tag_col, 0, 0)
    border = tuple(0.7 * float(c) for c in brand.tag)
    cv2.rectangle(d.rgb, (tg[0] + 2, tg[1] + 2), (tg[2] - 3, tg[3] - 3), border, 1, cv2.LINE_AA)
    ink = _tag_ink(brand.tag)
    tag_h = tg[3] - tg[1]
    origin_px = max(6, round(0.2 * tag_h))
    origin = text_mask(brand.origin, origin_px)
    while origin.shape[1] > 0.88 * (tg[2] - tg[0]) and origin_px > 5:
        origin_px -= 1
        origin = text_mask(brand.origin, origin_px)
    tcx = d.serial.centre_x
    paint(d.rgb, origin * 0.9, ink, round(tcx - origin.shape[1] / 2), round(tg[1] + 0.2 * tag_h))
    sm, sx, sy = serial_mask(d.serial)
    paint(d.rgb, sm * 0.95, ink, sx, sy)


# --------------------------------------------------------------------------- the table


@dataclass(frozen=True)
class Part:
    """One part of a product: ``plan`` (optional) decides it, tells change the plan, ``draw`` paints it."""

    name: str
    plan: Callable[[Draft], None] | None
    draw: Callable[[Draft], None]


PARTS: tuple[Part, ...] = (
    Part("body", None, draw_body),
    Part("canvas", plan_canvas, draw_canvas),
    Part("trim", plan_trim, draw_trim),
    Part("handle", None, draw_handle),
    Part("seams", plan_seams, draw_seams),
    Part("logo", plan_logo, draw_logo),
    Part("hardware", plan_hardware, draw_hardware),
    Part("tag", plan_tag, draw_tag),
)
"""Every part, in drawing order (later parts paint over earlier ones)."""
