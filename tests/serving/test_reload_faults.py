"""Reload contains failure: under continuous traffic, every bundle the issue lists (wrong checksum,
wrong output width, unlisted or escaping external data, a graph whose warm-up never ends) is
refused with ``422 bundle_invalid``, the old model keeps serving, the reload lock is free again at
once, and no request fails; a bundle with listed, hashed external data is accepted. What serves is
what was hashed: the bundle is read once, and changing the files afterwards changes nothing."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import faultbundles as fb
import pytest
from factories import jpeg_bytes
from serverutil import ADMIN_KEY, API_KEY, Server, copy_bundle, sha, start_server, stop_server
from test_reload import Traffic, _wait_for

from model.bundle import MODEL_FILE, load_bundle

ADMIN = {"X-API-Key": ADMIN_KEY}
RELOAD_TIMEOUT_S = 6


@pytest.fixture(scope="module")
def fault_server(tiny_bundle_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("faults")
    s = start_server(
        copy_bundle(tiny_bundle_dir, tmp / "bundle"),
        tmp / "serve.log",
        env={
            "AUTHLENS_API_KEY_HASHES": f'["{sha(API_KEY)}"]',
            "AUTHLENS_ADMIN_KEY_HASH": sha(ADMIN_KEY),
            "AUTHLENS_RELOAD_TIMEOUT_S": str(RELOAD_TIMEOUT_S),
        },
    )
    yield s
    stop_server(s)  # also ends the abandoned warm-up of the hanging bundle (a daemon thread)


def _deploy(directory: Path, source: Path) -> None:
    for f in directory.iterdir():
        f.unlink()
    for f in source.iterdir():
        shutil.copy2(f, directory / f.name)


def test_faulty_bundles_are_refused_under_traffic(
    fault_server: Server, tiny_bundle_dir: Path, tmp_path: Path
) -> None:
    s = fault_server
    serving = load_bundle(s.bundle).sha256
    pristine = copy_bundle(s.bundle, tmp_path / "pristine")
    faults = {
        "wrong-checksum": (fb.wrong_checksum, "SHA256SUMS"),
        "wrong-width": (fb.wrong_width, "flag_probs axis 1 is 7, bundle.json implies 3"),
        "unlisted-external-data": (
            lambda a, b: fb.external_data(a, b, listed=False),
            "external data is refused unless listed and hashed",
        ),
        "escaping-external-data": (fb.escaping_external_data, "'../weights.bin'"),
        "hanging-warm-up": (fb.hanging, f"did not finish within {RELOAD_TIMEOUT_S} s"),
    }
    outcomes = {}
    with Traffic(s) as traffic, s.client() as c:
        _wait_for(traffic, 3)
        for name, (make, expected) in faults.items():
            (tmp_path / name).mkdir()
            bad = make(tiny_bundle_dir, tmp_path / name / "bundle")
            _deploy(s.bundle, bad)
            t = time.monotonic()
            r = c.post("/v1/admin/reload", headers=ADMIN)
            outcomes[name] = (r.status_code, round(time.monotonic() - t, 1))
            assert r.status_code == 422, (name, r.text)
            error = r.json()["error"]
            assert error["code"] == "bundle_invalid" and expected in error["message"], (name, error)
            _wait_for(traffic, 2)  # still answering, on the old model
            assert c.get("/readyz").json()["bundle_sha256"] == serving
        # the hanging load was abandoned at its deadline: the lock is free, a good bundle swaps in
        listed = fb.external_data(tiny_bundle_dir, tmp_path / "listed" / "bundle", listed=True)
        _deploy(s.bundle, listed)
        r = c.post("/v1/admin/reload", headers=ADMIN)
        assert r.status_code == 200, r.text
        assert r.json()["bundle_sha256"] == load_bundle(listed).sha256 != serving
        _wait_for(traffic, 3)
        _deploy(s.bundle, pristine)
        assert c.post("/v1/admin/reload", headers=ADMIN).status_code == 200
        _wait_for(traffic, 2)
    assert outcomes["hanging-warm-up"][1] < RELOAD_TIMEOUT_S + 5, outcomes
    statuses = [code for code, _ in traffic.results]
    assert set(statuses) == {200}, [r for r in traffic.results if r[0] != 200][:3]
    metrics = s.client().get("/metrics").text
    assert f'authlens_reloads_total{{outcome="refused"}} {float(len(faults))}' in metrics
    assert "load_abandoned" in s.logs()


def test_what_serves_is_what_was_hashed(fault_server: Server, tmp_path: Path) -> None:
    """The graph is read once: replacing model.onnx after a reload cannot change the model that
    answers (before, the file was hashed and then reopened by path)."""
    s = fault_server
    with s.client() as c:
        assert c.post("/v1/admin/reload", headers=ADMIN).status_code == 200
        photo = [("files", ("p.jpg", jpeg_bytes(200, 150, seed=3)))]
        before = c.post("/v1/score", files=photo).json()
        model = s.bundle / MODEL_FILE
        pristine = model.read_bytes()
        model.write_bytes(b"not a graph at all")  # after it was read and hashed
        try:
            after = c.post("/v1/score", files=photo).json()
        finally:
            model.write_bytes(pristine)
    assert after["model"] == before["model"]
    assert after["item"]["counterfeit_probability"] == before["item"]["counterfeit_probability"]
