"""The tells: one drawing function per flag of :data:`model.flags.FLAG_NAMES`, in the :data:`TELLS` registry.

A tell changes the plan of one part of the item (``training.data.synth.parts``) after the part
has planned its genuine look and before it is painted, by a magnitude set by the tell's
strength, and returns the flat-pixel rectangle that holds the change (its box). Each tell draws
its details from its own generator (``tell_rng``), so tells never shift each other's draws.

Adding a tell: write ``def _my_tell(d, tell, rng) -> Rect`` and add ``"my_tell": Tell("part", _my_tell)``
to :data:`TELLS` (the name must be a flag of :data:`model.flags.FLAG_NAMES`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from training.data.synth.draw import motif_unit, pad, text_mask, tiled, union
from training.data.synth.layout import Rect
from training.data.synth.parts import Draft, logo_origin, panel_px, piece_px, serial_mask
from training.data.synth.specs import LETTERS, LOOKALIKES, TellSpec, tell_rng

TellFn = Callable[[Draft, TellSpec, np.random.Generator], Rect]
"""``(draft, tell, the tell's generator) -> the region it changed`` (flat pixels)."""


@dataclass(frozen=True)
class Tell:
    """A registered tell: the part whose plan it changes and the function that changes it."""

    part: str  # a name in training.data.synth.parts.PARTS
    draw: TellFn


def _monogram_alignment(d: Draft, t: TellSpec, rng: np.random.Generator) -> Rect:
    """The pocket is cut from canvas printed out of phase and at another scale."""
    pitch, (ox, oy) = d.print.pitch, d.print.offset
    px0, py0, px1, py1 = panel_px(d)
    shift = max(1.0, (0.12 + 0.43 * t.strength) * pitch)
    ang = rng.uniform(0, 2 * math.pi)
    dx, dy = round(shift * math.cos(ang)), round(shift * math.sin(ang))
    if dx == 0 and dy == 0:
        dx = 1
    # a fake's pocket is cut from canvas printed at another scale as well as out of phase
    scale = 1.0 + float(rng.choice([-1, 1])) * (0.04 + 0.08 * t.strength)
    fake_unit = motif_unit(
        d.spec.brand,
        max(pitch + 1, round(pitch * scale)) if scale > 1 else min(pitch - 1, round(pitch * scale)),
    )
    d.print.mask[py0:py1, px0:px1] = tiled(fake_unit, py1 - py0, px1 - px0, ox + px0 + dx, oy + py0 + dy)
    return pad(d.lay.panel, 2)


def _print_quality(d: Draft, t: TellSpec, rng: np.random.Generator) -> Rect:
    """A patch of the print (somewhere on the body) blurred, bled and faded."""
    w, h, body = d.w, d.h, d.lay.body
    bx0, by0 = float(body[:, 0].min()), float(body[:, 1].min())
    bx1, by1 = float(body[:, 0].max()), float(body[:, 1].max())
    rw = rng.uniform(0.2, 0.34) * w
    rh = min(rng.uniform(0.2, 0.34) * w, 0.8 * (by1 - by0))
    rx = rng.uniform(bx0 + 0.05 * w, max(bx0 + 0.05 * w + 1, bx1 - rw - 0.05 * w))
    ry = rng.uniform(by0 + 0.05 * h, max(by0 + 0.05 * h + 1, by1 - rh - 0.05 * h))
    x0, y0, x1, y1 = round(rx), round(ry), round(rx + rw), round(ry + rh)
    s = t.strength
    region = d.print.mask[y0:y1, x0:x1]
    blurred = cv2.GaussianBlur(region, (0, 0), 0.8 + 2.4 * s)
    bled = np.minimum(1.0, blurred * (1.0 + 0.8 * s))
    d.print.mask[y0:y1, x0:x1] = bled * (1.0 - 0.4 * s)
    return pad((x0, y0, x1, y1), 2)


def _color_shift(d: Draft, t: TellSpec, rng: np.random.Generator) -> Rect:
    """The trim leather off the reference shade, relative to the rest of the item."""
    s = t.strength
    # An additive shift along a random chroma direction (visible on black leather too) plus
    # a change of lightness; genuine trim only varies by the small natural jitter.
    phi = float(rng.uniform(0, 2 * math.pi))
    chroma = np.cos(phi - np.array([0.0, 2 * math.pi / 3, 4 * math.pi / 3])) * (0.04 + 0.12 * s)
    light = float(rng.choice([-1, 1])) * 0.07 * s
    r, g, b = (float(v) for v in np.clip(np.asarray(d.spec.trim) + chroma + light, 0.02, 0.98))
    d.trim_colour = (r, g, b)
    tx0, ty0, tx1, ty1 = (round(v) for v in d.lay.trim)
    return pad((tx0, ty0, tx1, ty1), 2)


def _stitch_irregular(d: Draft, t: TellSpec, rng: np.random.Generator) -> Rect:
    """A run of 7-12 stitches on one seam with uneven length, slant and position."""
    st, s = d.stitches, t.strength
    run = int(rng.integers(7, 13))
    # the run stays on one seam (a run across two seams would box half the item)
    seam_i = int(rng.integers(len(st.seam_start)))
    first = st.seam_start[seam_i]
    count = st.seam_of.count(seam_i)
    run = min(run, count)
    start = first + int(rng.integers(0, max(1, count - run + 1)))
    sel = slice(start, start + run)
    along = rng.normal(0, 0.45 * st.pitch * s, run)
    across = rng.normal(0, 0.25 * st.pitch * s, run)
    st.length[sel] *= np.clip(1 + rng.normal(0, 0.5 * s, run), 0.35, 1.7)
    st.slant[sel] += rng.normal(0, math.radians(35) * s, run)
    angs = np.array([a for _, _, a in st.centres[sel]])
    st.offsets[sel, 0] = along * np.cos(angs) - across * np.sin(angs)
    st.offsets[sel, 1] = along * np.sin(angs) + across * np.cos(angs)
    xs = np.array([x for x, _, _ in st.centres[sel]])
    ys = np.array([y for _, y, _ in st.centres[sel]])
    return pad(
        (float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max())),
        0.75 * st.pitch + 2 * st.thick + 2,
    )


def _logo_font(d: Draft, t: TellSpec, rng: np.random.Generator) -> Rect:
    """The logo lettered with other spacing, width and weight (the subtlest: another font)."""
    logo, s = d.logo, t.strength
    px = logo.px
    tracking = 0.06 * px + float(rng.choice([-1, 1])) * (0.15 + 0.4 * s) * px * 0.5
    hscale = 1.0 + float(rng.choice([-1, 1])) * (0.07 + 0.15 * s)
    stroke = 1 if s > 0.5 else 0  # heavier lettering, the commonest give-away
    bitmap = bool(s > 0.85 and rng.random() < 0.5)
    mask = text_mask(logo.text, px, round(tracking, 2), stroke, round(hscale, 3), bitmap)
    limit = round(1.25 * logo.genuine.shape[1])
    if mask.shape[1] > limit:  # a fake plate still holds its lettering
        mask = cv2.resize(mask, (limit, mask.shape[0]), interpolation=cv2.INTER_AREA)
    logo.mask = mask
    lcx, lcy = d.lay.logo[:2]
    gh, gw = logo.genuine.shape
    mh, mw = mask.shape
    mx, my = logo_origin(d)
    text_box = (mx, my, mx + mw, my + mh)
    gbox = (lcx - gw / 2, lcy - gh / 2, lcx + gw / 2, lcy + gh / 2)
    return pad(union(text_box, gbox), 3)


def _hardware_finish(d: Draft, t: TellSpec, rng: np.random.Generator) -> Rect:
    """One hardware piece dulled, greyed and pitted (same brushing and highlight as genuine)."""
    k = int(rng.integers(len(d.lay.hardware)))
    # The pits are drawn from a fresh generator of the tell's seed, not from ``rng`` after the
    # draw above: that is how the set was first generated, and the bytes must not change.
    d.dull[k] = (t.strength, tell_rng(d.spec.seed, d.spec.index, t.name))
    x0, y0, pw, ph = piece_px(d.lay.hardware[k])
    return pad((x0, y0, x0 + pw, y0 + ph), 2)


def fake_serial(
    serial: str, strength: float, px: int, rng: np.random.Generator
) -> tuple[str, float, float, bool, int]:
    """A counterfeit serial: ``(text, tracking, hscale, bitmap font, baseline shift)``.

    Obvious fakes break the format (wrong length, letters where digits belong, another font);
    subtle ones keep the format but space or stretch the characters by a pixel or two (and half
    of them also swap a character for a look-alike, which only full resolution shows).

    Args:
        serial: The genuine serial.
        strength: The tell's strength (:attr:`TellSpec.strength`).
        px: Font size of the serial in pixels.
        rng: The tell's generator.

    Returns:
        The lettering to draw.
    """
    text, tracking, hscale, bitmap, dy = serial, 0.08 * px, 1.0, False, 0
    if strength > 0.6:
        choice = int(rng.integers(3))
        if choice == 0:
            text = serial + str(int(rng.integers(10)))
        elif choice == 1:
            chars = list(serial)
            i = int(rng.integers(len(chars)))
            chars[i] = chars[i].lower() if chars[i].isalpha() else LETTERS[int(rng.integers(len(LETTERS)))]
            text = "".join(chars)
        else:
            bitmap = True
        tracking += float(rng.uniform(0.1, 0.3)) * px
    else:
        # spacing and width off (what survives at 224 px), sometimes with a look-alike character
        # on top (only legible at full resolution)
        tracking += float(rng.choice([-1, 1])) * (1.0 + 1.5 * strength)
        hscale = 1.0 + float(rng.choice([-1, 1])) * (0.1 + 0.15 * strength)
        swappable = [i for i, ch in enumerate(serial) if ch in LOOKALIKES]
        if swappable and rng.random() < 0.5:
            i = swappable[int(rng.integers(len(swappable)))]
            text = serial[:i] + LOOKALIKES[serial[i]] + serial[i + 1 :]
        if rng.random() < 0.3:
            dy = 1
    return text, tracking, hscale, bitmap, dy


def _serial_format(d: Draft, t: TellSpec, rng: np.random.Generator) -> Rect:
    """The serial in the wrong format or font (subtle ones need full resolution)."""
    plan = d.serial
    plan.text, plan.tracking, plan.hscale, plan.bitmap, plan.dy = fake_serial(
        d.spec.serial, t.strength, plan.px, rng
    )
    sm, sx, sy = serial_mask(plan)
    # where the genuine serial would be (its tracking unrounded, as it was first measured)
    sg = text_mask(d.spec.serial, plan.px, 0.08 * plan.px)
    gsx, gsy = round(plan.centre_x - sg.shape[1] / 2), plan.top
    return pad(
        union((sx, sy, sx + sm.shape[1], sy + sm.shape[0]), (gsx, gsy, gsx + sg.shape[1], gsy + sg.shape[0])),
        2,
    )


TELLS: dict[str, Tell] = {
    "logo_font": Tell("logo", _logo_font),
    "monogram_alignment": Tell("canvas", _monogram_alignment),
    "stitch_irregular": Tell("seams", _stitch_irregular),
    "color_shift": Tell("trim", _color_shift),
    "print_quality": Tell("canvas", _print_quality),
    "hardware_finish": Tell("hardware", _hardware_finish),
    "serial_format": Tell("tag", _serial_format),
}
"""Every tell, by flag name. Tells of one part run in :data:`model.flags.FLAG_NAMES` order."""
