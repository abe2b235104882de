"""Serving fixtures: one real ``authlens serve`` per test module."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from serverutil import ADMIN_KEY, API_KEY, Server, copy_bundle, sha, start_server, stop_server


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "load: measures the server under load or against the clock (soak, overload, deadlines); "
        "`make test` runs these alone, after the parallel run",
    )


@pytest.fixture(scope="module")
def server(tiny_bundle_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server per test module, on its own copy of the tiny bundle, with API and admin keys."""
    tmp = tmp_path_factory.mktemp("server")
    bundle = copy_bundle(tiny_bundle_dir, tmp / "bundle")
    s = start_server(
        bundle,
        tmp / "serve.log",
        env={"AUTHLENS_API_KEY_HASHES": f'["{sha(API_KEY)}"]', "AUTHLENS_ADMIN_KEY_HASH": sha(ADMIN_KEY)},
    )
    yield s
    stop_server(s)


@pytest.fixture(scope="session")
def no_flag_bundle_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model trained without flag labels: ``flags: []``, no flag outputs."""
    from factories import tiny_bundle

    out = tmp_path_factory.mktemp("bundle") / "no-flags"
    tiny_bundle(out, flags=())
    return out


@pytest.fixture(scope="session")
def postgres() -> Iterator[object]:
    """A real PostgreSQL server for the review store (Debian's postgresql; fails where it cannot start)."""
    from pgutil import remove, start_postgres

    try:
        server = start_postgres()
    except Exception as exc:
        pytest.fail(f"PostgreSQL could not be started: {exc}")
    yield server
    remove(server)


CHROMIUM = os.environ.get("AUTHLENS_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """Headless Debian Chromium through Playwright (never a downloaded browser), one per module."""
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).is_file():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (make browser-deps does).")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()
