"""Shared fixtures: tiny bundles and images are built at test time, never downloaded."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SNEAKERS = ROOT.parent / "shared" / "data" / "sneakers-nike"
# The project root goes on sys.path too: pytest puts tests/ there, and its mirror folders
# (tests/training/data ...) would otherwise shadow the packages as namespace packages.
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(scope="session")
def tiny_bundle_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A verified bundle of a random-weight network at 64 px (exported once per session)."""
    from factories import tiny_bundle

    out = tmp_path_factory.mktemp("bundle") / "tiny"
    tiny_bundle(out)
    return out


@pytest.fixture(scope="session")
def sneakers_dir() -> Path:
    """The real sneakers photos beside the project (../shared/data/sneakers-nike)."""
    if not (SNEAKERS / "manifest.csv").is_file():
        pytest.fail(f"Real data missing: {SNEAKERS} must exist beside the project (see README).")
    return SNEAKERS
