"""The server process must never load torch, timm or albumentations."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("torch", "timm", "albumentations")


def test_app_and_cli_imports_leave_torch_out() -> None:
    code = (
        "import sys, json\n"
        "import authlens.cli, serving.main, serving.offline, serving.bench\n"
        "from serving.core.config import Settings\n"
        "serving.main.create_app(Settings(bundle='unused'))\n"
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_serving_a_request_and_a_reload_leave_torch_out(tiny_bundle_dir) -> None:
    """Lifespan (bundle load, warm-up), a scored photo and a reload: lazy imports on those paths count too."""
    code = (
        "import io, sys, json\n"
        "from fastapi.testclient import TestClient\n"
        "from PIL import Image\n"
        "import serving.main\n"
        "from serving.core.config import Settings\n"
        "buf = io.BytesIO(); Image.new('RGB', (320, 240), (120, 80, 40)).save(buf, 'JPEG')\n"
        f"app = serving.main.create_app(Settings(bundle={str(tiny_bundle_dir)!r}))\n"
        "with TestClient(app) as c:\n"
        "    r = c.post('/v1/score', files=[('files', ('a.jpg', buf.getvalue(), 'image/jpeg'))])\n"
        "    assert r.status_code == 200, r.text\n"
        "    admin = {'Host': '127.0.0.1', 'Content-Type': 'application/json'}  # a same-host admin call\n"
        "    assert c.post('/v1/admin/reload', headers=admin).status_code == 200\n"
        "    assert c.post('/v1/score?explain=true', files=[('files', ('a.jpg', buf.getvalue()))]).status_code == 200\n"
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def _imported_modules(path) -> set[str]:
    import ast

    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def test_layers_import_only_what_they_may() -> None:
    """serving/ never imports training/ or the network; model/ imports neither half (ARCHITECTURE.md)."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    rules = {
        "serving": ("training", "authlens", "model.network", *HEAVY),
        "model": ("training", "serving", "authlens"),
    }
    broken = []
    for package, forbidden in rules.items():
        files = sorted((root / package).rglob("*.py"))
        assert files, f"no Python files under {package}/"
        for path in files:
            for name in _imported_modules(path):
                if any(name == f or name.startswith(f + ".") for f in forbidden):
                    broken.append(f"{path.relative_to(root)} imports {name}")
    assert broken == []
