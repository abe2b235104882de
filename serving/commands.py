"""``authlens serve``, ``score``, ``verify-receipt`` and ``bench``.

Usage: ``authlens serve --bundle bundles/demo --port 8000``
"""

from __future__ import annotations


def serve() -> None:
    raise NotImplementedError("authlens serve")


def score() -> None:
    raise NotImplementedError("authlens score")


def verify_receipt() -> None:
    raise NotImplementedError("authlens verify-receipt")


def bench() -> None:
    raise NotImplementedError("authlens bench")
