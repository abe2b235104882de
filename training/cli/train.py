"""``authlens train`` and ``authlens evaluate``.

Usage: ``authlens train --config configs/synthetic.yaml --set train.epochs=3``
"""

from __future__ import annotations


def train() -> None:
    raise NotImplementedError("authlens train")


def evaluate() -> None:
    raise NotImplementedError("authlens evaluate")
