"""Synthetic product photos of luxury goods whose only difference between classes is the tells.

Usage: ``authlens data synth --out datasets/synthetic --n 600 --seed 0``

Each physical *item* (a handbag, wallet, card holder or belt of one of four fictitious brands)
is drawn flat once: monogram canvas, a leather trim piece, stitched seams, a logo plate or
embossed stamp, metal hardware and a leather tag with a serial number. A counterfeit item
carries one to three tells from :data:`model.flags.FLAG_NAMES`, each drawn as a local change of
one of those parts with a magnitude set by its *subtlety* (0 = obvious, 1 = hard to see at
224 px). Every photo of an item then gets its own pose (rotation, perspective,
scale), background, shadow, lighting, white balance, exposure, glare, blur, sensor noise and
JPEG quality, drawn from distributions that do not depend on the label.

Determinism: the item plan comes from ``(seed, 0)``, item *i* from ``(seed, 1, i)``, photo *k*
from ``(seed, 2, k)`` and tell details from ``(seed, 3, i, flag)``, so any photo can be rendered
alone (in any process) and the same seed gives the same bytes.

Modules, in dependency order:

* ``layout``: the per-category layout table (:data:`LAYOUTS`: where each part sits).
* ``specs``: brands and the seeded item, photo and tell specifications; the item plan.
* ``draw``: painting primitives (noise banks, text and motif masks, blending, metal).
* ``parts``: one plan and one drawing function per product part (:data:`PARTS`).
* ``tells``: one drawing function per flag, the :data:`TELLS` registry.
* ``flat``: :func:`render_flat`, the parts and their tells composed.
* ``photo``: :func:`render_photo`, the flat item posed in a scene through a camera.
* ``preview``: the contact sheet, tell visibility and tell close-ups.
* ``writer``: :func:`generate`, a whole set on disk.
"""

from __future__ import annotations

from training.data.synth.flat import FlatItem, render_flat
from training.data.synth.layout import ASPECT, CATEGORIES, FRAMING, LAYOUTS, CategoryLayout, place
from training.data.synth.parts import PARTS, Part
from training.data.synth.photo import BACKGROUND_PAINTERS, SynthPhoto, render_photo, synth_photo
from training.data.synth.preview import contact_sheet, tell_closeups, tell_visibility
from training.data.synth.specs import (
    BACKGROUNDS,
    BRANDS,
    Brand,
    ItemSpec,
    PhotoSpec,
    TellSpec,
    item_spec,
    photo_spec,
    plan_items,
)
from training.data.synth.tells import TELLS, Tell
from training.data.synth.writer import CONTACT_SHEET, IMAGE_DIR, encode_jpeg, generate, is_synthetic

__all__ = [
    "ASPECT",
    "BACKGROUNDS",
    "BACKGROUND_PAINTERS",
    "BRANDS",
    "CATEGORIES",
    "CONTACT_SHEET",
    "FRAMING",
    "IMAGE_DIR",
    "LAYOUTS",
    "PARTS",
    "TELLS",
    "Brand",
    "CategoryLayout",
    "FlatItem",
    "ItemSpec",
    "Part",
    "PhotoSpec",
    "SynthPhoto",
    "Tell",
    "TellSpec",
    "contact_sheet",
    "encode_jpeg",
    "generate",
    "is_synthetic",
    "item_spec",
    "photo_spec",
    "place",
    "plan_items",
    "render_flat",
    "render_photo",
    "synth_photo",
    "tell_closeups",
    "tell_visibility",
]
