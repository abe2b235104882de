"""The investigators' page in headless Chromium: drop photos, see a verdict and overlays.

Uses Debian's ``/usr/bin/chromium`` (installed by ``.ci/run``) through Playwright.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from serverutil import Server, copy_bundle, start_server, stop_server

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def page_server(tiny_bundle_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("page")
    s = start_server(copy_bundle(tiny_bundle_dir, tmp / "bundle"), tmp / "serve.log")
    yield s
    stop_server(s)


def test_drop_photos_and_see_verdict_with_overlays(
    page_server: Server, browser, sneakers_dir: Path, tmp_path: Path
) -> None:
    photos = sorted((sneakers_dir / "genuine").glob("*.jpg"))[:2]
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1200, "height": 1000})
    requested: list[str] = []
    page.on("request", lambda r: requested.append(r.url))
    page.goto(page_server.url + "/")
    # Playwright's expect() polls without evaluating strings: the page's CSP forbids eval.
    expect(page.locator("#model-line")).to_contain_text("Model tiny")

    # a real drop event carrying two File objects
    payload = [{"name": p.name, "b64": base64.b64encode(p.read_bytes()).decode()} for p in photos]
    transfer = page.evaluate_handle(
        """(files) => {
            const dt = new DataTransfer();
            for (const f of files) {
                const bytes = Uint8Array.from(atob(f.b64), c => c.charCodeAt(0));
                dt.items.add(new File([bytes], f.name, {type: 'image/jpeg'}));
            }
            return dt;
        }""",
        payload,
    )
    page.dispatch_event("#drop-zone", "drop", {"dataTransfer": transfer})
    assert page.locator("#selected li").count() == 2
    page.get_by_role("button", name="Check authenticity").click()
    page.wait_for_selector("#result:not([hidden])", timeout=30_000)

    verdict = page.locator("#verdict-text").inner_text()
    assert verdict in ("GENUINE", "COUNTERFEIT", "INCONCLUSIVE")
    assert page.locator("#verdict").get_attribute("data-verdict") == verdict.lower()
    assert "%" in page.locator("#auth-score").inner_text()
    overlays = page.locator("img.overlay")
    assert overlays.count() == 2
    for i in range(2):
        expect(overlays.nth(i)).to_have_js_property("complete", True)
    assert overlays.evaluate_all("imgs => imgs.every(i => i.naturalWidth > 0)")
    if verdict == "INCONCLUSIVE":
        assert page.locator("#reasons li").count() >= 1
    page.get_by_text("Evidence receipt and model").click()
    assert page.locator("#answer-meta").inner_text().count("sha256") >= 3
    shot = tmp_path / "page.png"
    page.screenshot(path=str(shot), full_page=True)
    if os.environ.get("AUTHLENS_SCREENSHOT"):
        page.screenshot(path=os.environ["AUTHLENS_SCREENSHOT"], full_page=True)
    assert shot.stat().st_size > 10_000
    # the map can be hidden, and nothing came from outside this server
    page.locator("#show-maps").uncheck()
    assert not overlays.first.is_visible()
    assert all(u.startswith((page_server.url, "data:", "blob:")) for u in requested), requested
    page.close()


def test_a_model_without_flags_says_it_raises_none(
    no_flag_bundle_dir: Path, browser, sneakers_dir: Path, tmp_path: Path
) -> None:
    """Trained without flag labels: the page says the model raises no flags, not that none was raised."""
    from playwright.sync_api import expect

    photo = sorted((sneakers_dir / "genuine").glob("*.jpg"))[0]
    s = start_server(copy_bundle(no_flag_bundle_dir, tmp_path / "bundle"), tmp_path / "serve.log")
    try:
        page = browser.new_page()
        page.goto(s.url + "/")
        expect(page.locator("#model-line")).to_contain_text("raises no flags (trained without flag labels)")
        page.set_input_files("#file-input", files=[str(photo)])
        page.get_by_role("button", name="Check authenticity").click()
        page.wait_for_selector("#result:not([hidden])", timeout=30_000)
        assert page.locator("#flags li").count() == 0
        expect(page.locator("#no-flags")).to_have_text(
            "Trained without flag labels: this model raises no flags."
        )
        assert page.locator("#photos .box").count() == 0
        page.close()
    finally:
        stop_server(s)


def test_error_is_announced(page_server: Server, browser) -> None:
    page = browser.new_page()
    page.goto(page_server.url + "/")
    page.set_input_files(
        "#file-input", files=[{"name": "notes.jpg", "mimeType": "image/jpeg", "buffer": b"not a photo"}]
    )
    page.get_by_role("button", name="Check authenticity").click()
    alert = page.get_by_role("alert")
    alert.wait_for()
    assert "unsupported_format" in alert.inner_text()
    page.close()


def test_api_docs_render_offline(page_server: Server, browser) -> None:
    """Swagger UI renders with every request answered by this server: any other host is blocked,
    as on an air-gapped machine."""
    page = browser.new_page()
    outside: list[str] = []

    def only_local(route) -> None:
        url = route.request.url
        if url.startswith((page_server.url, "data:", "blob:")):
            route.continue_()
        else:
            outside.append(url)
            route.abort()

    page.route("**/*", only_local)
    page.goto(page_server.url + "/docs")
    title = page.locator(".swagger-ui .info .title")
    title.wait_for(timeout=30_000)
    assert "authlens" in title.inner_text()
    paths = page.locator(".opblock-summary-path")
    paths.first.wait_for()
    assert {"/v1/score", "/v1/score/batch", "/v1/admin/reload"} <= set(paths.all_inner_texts())
    assert outside == [], outside
    page.close()
