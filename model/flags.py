"""The fixed vocabulary of counterfeit tells ("flags").

The order of :data:`FLAG_NAMES` is the order of the network's flag head and of every flag
vector in manifests, reports and bundles. Appending a flag is a new model; reordering is a bug.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Flag:
    """One named tell an investigator can look for.

    Attributes:
        name: Stable identifier used in manifests, API responses and the ONNX head order.
        title: Short human title for the web page.
        description: What the tell looks like on a counterfeit.
    """

    name: str
    title: str
    description: str


FLAGS: tuple[Flag, ...] = (
    Flag("logo_font", "Logo lettering", "Logo or wordmark letters have the wrong weight, spacing or shape."),
    Flag(
        "monogram_alignment",
        "Monogram alignment",
        "Monogram pattern is cut off, misaligned at seams or repeats at the wrong pitch.",
    ),
    Flag(
        "stitch_irregular",
        "Stitching",
        "Stitch length, spacing or angle is uneven; loose or doubled stitches.",
    ),
    Flag("color_shift", "Colour", "Leather, canvas or print colour is off the reference shade."),
    Flag(
        "print_quality", "Print quality", "Blurred, bleeding or low-resolution printing of patterns or text."
    ),
    Flag(
        "hardware_finish",
        "Hardware finish",
        "Metal hardware is dull, pitted, mis-plated or wrongly engraved.",
    ),
    Flag(
        "serial_format", "Serial / date code", "Serial or date code has the wrong format, font or placement."
    ),
)

FLAG_NAMES: tuple[str, ...] = tuple(f.name for f in FLAGS)
FLAG_INDEX: dict[str, int] = {name: i for i, name in enumerate(FLAG_NAMES)}

LABELS: tuple[str, str] = ("genuine", "counterfeit")
"""Class names; index 1 is the positive class of every counterfeit metric."""


class UnknownFlagError(ValueError):
    """Raised when a flag name is not in the vocabulary."""


def flag_index(name: str) -> int:
    """Return the head index of a flag.

    Args:
        name: A flag name.

    Raises:
        UnknownFlagError: ``name`` is not in :data:`FLAG_NAMES`; the message lists them.
    """
    try:
        return FLAG_INDEX[name]
    except KeyError:
        raise UnknownFlagError(f"Unknown flag {name!r}. Known flags: {', '.join(FLAG_NAMES)}.") from None
