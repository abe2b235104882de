"""The server process must never load torch, timm or albumentations."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("torch", "timm", "albumentations")


def test_app_and_cli_imports_leave_torch_out() -> None:
    code = (
        "import sys, json\n"
        "import serving.cli, serving.main, serving.offline, serving.bench\n"
        "from serving.core.config import Settings\n"
        "serving.main.create_app(Settings(bundle='unused'))\n"
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
