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

from serverutil import API_KEY, Server

FUZZ_EXAMPLES = int(os.environ.get("AUTHLENS_FUZZ_EXAMPLES", "25"))


def test_generated_requests_never_break_the_api(server: Server) -> None:
    with urllib.request.urlopen(server.url + "/openapi.json") as answer:
        paths = json.load(answer)["paths"]
    operations = sum(len(methods) for methods in paths.values())
    proc = subprocess.run(
        [
            sys.executable, "-m", "schemathesis.cli", "--no-color", "run", server.url + "/openapi.json",
            "--checks", "all",
            # a zero-byte or non-image `files` part is schema-valid binary, rightly answered 422
            "--exclude-checks", "positive_data_acceptance",
            # every admitted reload loads and warms a model; its auth is tested in test_api.py
            "--exclude-path", "/v1/admin/reload",
            "--header", f"X-API-Key: {API_KEY}",
            "--max-examples", str(FUZZ_EXAMPLES), "--workers", "1", "--seed", "1",
            "--suppress-health-check", "all",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    # every operation but reload was exercised
    assert f"Tested: {operations - 1}" in proc.stdout, proc.stdout[-3000:]
