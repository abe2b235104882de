"""Property-based fuzzing of every operation in the OpenAPI schema against a real server.

schemathesis derives requests from ``/openapi.json`` (boundary cases, then valid and invalid
random ones) and checks that none gets a 5xx, that every answer matches the documented status
codes, content types, headers and response schemas, and that requests without the API key are
refused. A bounded run (``FUZZ_EXAMPLES`` examples per operation, fixed seed) is part of the
default suite; ``AUTHLENS_FUZZ_EXAMPLES=500 pytest tests/serving/test_fuzz.py`` runs a longer one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from reviewutil import ANA_KEY, REVIEWERS
from serverutil import ADMIN_KEY, API_KEY, Server, copy_bundle, sha, start_server, stop_server

FUZZ_EXAMPLES = int(os.environ.get("AUTHLENS_FUZZ_EXAMPLES", "25"))


@pytest.fixture(scope="module")
def fuzz_server(tiny_bundle_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Every route live: API and admin keys, the review store and an investigator, whose key the
    run sends (an investigator's key is an API key too, so scoring and review routes admit it)."""
    tmp = tmp_path_factory.mktemp("fuzz")
    env = {
        "AUTHLENS_API_KEY_HASHES": f'["{sha(API_KEY)}"]',
        "AUTHLENS_ADMIN_KEY_HASH": sha(ADMIN_KEY),
        "AUTHLENS_REVIEW_ENABLED": "true",
        "AUTHLENS_REVIEWERS": json.dumps(REVIEWERS),
    }
    s = start_server(copy_bundle(tiny_bundle_dir, tmp / "bundle"), tmp / "serve.log", env=env)
    yield s
    stop_server(s)


def _schemathesis(server: Server, key: str, *paths: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable, "-m", "schemathesis.cli", "--no-color", "run", server.url + "/openapi.json",
            "--checks", "all",
            # a zero-byte or non-image `files` part is schema-valid binary, rightly answered 422
            "--exclude-checks", "positive_data_acceptance",
            # every admitted reload loads and warms a model; its auth is tested in test_api.py
            "--exclude-path", "/v1/admin/reload",
            *paths,
            "--header", f"X-API-Key: {key}",
            "--max-examples", str(FUZZ_EXAMPLES), "--workers", "1", "--seed", "1",
            "--suppress-health-check", "all",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )  # fmt: skip


def test_generated_requests_never_break_the_api(fuzz_server: Server) -> None:
    with urllib.request.urlopen(fuzz_server.url + "/openapi.json") as answer:
        paths = json.load(answer)["paths"]
    operations = sum(len(methods) for methods in paths.values())
    admin = sum(len(methods) for path, methods in paths.items() if path.startswith("/v1/admin/"))
    # the admin routes take the admin key, every other route the investigator's
    users = _schemathesis(fuzz_server, ANA_KEY, "--exclude-path-regex", "^/v1/admin/")
    assert users.returncode == 0, users.stdout[-6000:] + users.stderr[-2000:]
    admins = _schemathesis(fuzz_server, ADMIN_KEY, "--include-path-regex", "^/v1/admin/")
    assert admins.returncode == 0, admins.stdout[-6000:] + admins.stderr[-2000:]
    # every operation but reload was exercised
    assert f"Tested: {operations - admin}" in users.stdout, users.stdout[-3000:]
    assert f"Tested: {admin - 1}" in admins.stdout, admins.stdout[-3000:]
