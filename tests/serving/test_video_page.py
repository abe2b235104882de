"""The web pages for the new features in headless Chromium: a recording uploaded on /video, its
report, jumping to suspect moments; a reused photo on / named with its gallery reference."""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from galleryutil import bundle_with_photo_reference, sneaker_files
from serverutil import Server, start_server, stop_server
from videoutil import Scene, boundaries, product_frame, scenes_to_frames, write_video

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def page_server(
    tiny_bundle_dir: Path, sneakers_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """A keyless loopback server (admin routes open to same-host JSON requests) with a gallery."""
    tmp = tmp_path_factory.mktemp("video-page")
    bundle = bundle_with_photo_reference(tiny_bundle_dir, tmp / "bundle", sneakers_dir)
    s = start_server(bundle, tmp / "serve.log", env={"AUTHLENS_VIDEO_SAMPLE_FPS": "4"})
    yield s
    stop_server(s)


def test_upload_a_recording_and_jump_to_suspect_moments(page_server: Server, browser, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    scenes = [Scene(product_frame(0, i, i, size=128), 1.5, str(i)) for i in range(4)]
    path = write_video(tmp_path / "live.webm", scenes_to_frames(scenes, 10), 10)
    truth = boundaries(scenes)
    page = browser.new_page(viewport={"width": 1100, "height": 1400})
    requested: list[str] = []
    page.on("request", lambda r: requested.append(r.url))
    page.goto(page_server.url + "/video")
    page.set_input_files("#video-input", files=[str(path)])
    expect(page.locator("#chosen")).to_contain_text("live.webm")
    page.get_by_role("button", name="Find suspect moments").click()
    page.wait_for_selector("#report:not([hidden])", timeout=60_000)
    rows = page.locator("#segments li")
    expect(rows).to_have_count(len(truth))
    expect(page.locator("#summary")).to_contain_text("4 segments")
    expect(page.locator("#timeline")).to_have_js_property("complete", True)
    assert page.locator("#timeline").evaluate("img => img.naturalWidth") == 960
    # jump to the third segment: the player's position is its start
    start = float(rows.nth(2).get_attribute("data-start") or "nan")
    assert abs(start - truth[2][0]) <= 0.5
    rows.nth(2).get_by_role("button").click()
    player = page.locator("#player")
    assert abs(player.evaluate("v => v.currentTime") - start) < 0.05
    # the first suspect moment (the tiny model calls these products counterfeit), from the button
    suspects = rows.locator(".tag.counterfeit")
    if suspects.count():
        page.get_by_role("button", name="Next suspect moment").click()
        first = float(page.locator("#segments li.counterfeit").first.get_attribute("data-start") or "nan")
        assert abs(player.evaluate("v => v.currentTime") - first) < 0.05
    if os.environ.get("AUTHLENS_SCREENSHOT_VIDEO"):
        page.screenshot(path=os.environ["AUTHLENS_SCREENSHOT_VIDEO"], full_page=True)
    assert all(u.startswith((page_server.url, "data:", "blob:")) for u in requested), requested
    page.close()


def test_a_bad_recording_is_announced(page_server: Server, browser) -> None:
    page = browser.new_page()
    page.goto(page_server.url + "/video")
    page.set_input_files(
        "#video-input", files=[{"name": "x.mp4", "mimeType": "video/mp4", "buffer": b"\x00" * 4000}]
    )
    page.get_by_role("button", name="Find suspect moments").click()
    alert = page.get_by_role("alert")
    alert.wait_for()
    assert "corrupt_video" in alert.inner_text()
    page.close()


def test_a_reused_photo_names_its_reference(
    page_server: Server, browser, sneakers_dir: Path, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    photo = sneaker_files(sneakers_dir)[3]
    body = {
        "references": [{"data": base64.b64encode(photo.read_bytes()).decode(), "source": "brand catalogue"}]
    }
    r = httpx.post(page_server.url + "/v1/admin/gallery", json=body, timeout=60)
    assert r.status_code == 200, r.text
    ref_id = r.json()["results"][0]["reference"]["id"]
    other = sneaker_files(sneakers_dir)[200]
    page = browser.new_page(viewport={"width": 1200, "height": 1000})
    page.goto(page_server.url + "/")
    expect(page.locator("#model-line")).to_contain_text("Model tiny")
    page.set_input_files("#file-input", files=[str(photo), str(other)])
    page.get_by_role("button", name="Check authenticity").click()
    page.wait_for_selector("#result:not([hidden])", timeout=30_000)
    reuse = page.locator("#photos .reuse")
    expect(reuse).to_have_count(1)
    expect(reuse).to_contain_text(f"gallery reference #{ref_id}")
    expect(reuse).to_contain_text("brand catalogue")
    expect(page.locator("#reuse-note")).to_contain_text("Photo 1 matches the reference gallery")
    expect(page.locator("#photos li").first).to_contain_text("does not vote")
    if os.environ.get("AUTHLENS_SCREENSHOT_REUSE"):
        page.screenshot(path=os.environ["AUTHLENS_SCREENSHOT_REUSE"], full_page=True)
    page.close()
