"""``authlens export``: checkpoint to verified ONNX bundle.

Usage: ``authlens export --checkpoint runs/synthetic/best.pt --out bundles/synthetic --int8``
"""

from __future__ import annotations


def export() -> None:
    raise NotImplementedError("authlens export")
