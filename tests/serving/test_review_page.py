"""The review page in headless Chromium: an investigator signs in with their key, ranks, opens an
item (photos, flags, receipt, listing link), decides, sees the history and downloads a case file."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from reviewutil import ANA_KEY, batch_body, post_batch, start_review_server
from serverutil import Server, stop_server

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def page_server(
    tiny_bundle_dir: Path, sneakers_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    s = start_review_server(tiny_bundle_dir, tmp_path_factory.mktemp("review-page"))
    photos = sorted(sneakers_dir.glob("*/*.jpg"))[20:26]
    assert post_batch(s, batch_body(photos)).status_code == 200
    yield s
    stop_server(s)


def test_rank_open_decide_and_export_a_case(page_server: Server, browser, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1200, "height": 1400}, accept_downloads=True)
    foreign: list[str] = []
    page.on(
        "request",
        lambda r: (
            None
            if r.url.startswith(page_server.url) or r.url.startswith(("data:", "blob:"))
            else foreign.append(r.url)
        ),
    )
    page.goto(page_server.url + "/review")
    page.fill("#review-key", ANA_KEY)
    page.get_by_role("button", name="Open the queue").click()
    expect(page.locator("#who")).to_contain_text("ana (investigator)")
    rows = page.locator("#queue tr")
    expect(rows).to_have_count(3)
    probs = [float(t.split()[0]) for t in rows.locator("td:first-child").all_inner_texts()]
    assert probs == sorted(probs, reverse=True)
    # filter: one marketplace
    page.select_option("select[name=status]", "any")
    page.fill("input[name=marketplace]", "shop-b")
    page.get_by_role("button", name="Show").click()
    expect(rows).to_have_count(1)
    page.fill("input[name=marketplace]", "")
    page.get_by_role("button", name="Show").click()
    expect(rows).to_have_count(3)
    rows.first.click()
    expect(page.locator("#item")).to_be_visible()
    photos = page.locator("#item-photos img:not(.overlay)")
    expect(photos).to_have_count(2)
    expect(photos.first).to_have_js_property("complete", True)
    assert photos.first.evaluate("img => img.naturalWidth") > 0
    link = page.locator("#item-meta a")
    assert (link.get_attribute("href") or "").startswith("https://shop.example/listing/")
    expect(page.locator("#item-receipt")).to_contain_text("signature")
    # decide twice: both are kept
    page.check("input[value=unsure]")
    page.fill("#note", "need the tag")
    page.get_by_role("button", name="Save decision").click()
    expect(page.locator("#saved")).to_contain_text("unsure")
    page.check("input[value=confirmed_counterfeit]")
    page.fill("#note", "serial font wrong")
    page.get_by_role("button", name="Save decision").click()
    expect(page.locator("#history li")).to_have_count(2)
    expect(page.locator("#history li").nth(1)).to_contain_text("unsure → confirmed_counterfeit")
    expect(rows.first.locator(".status")).to_have_text("confirmed_counterfeit")
    with page.expect_download() as info:
        page.get_by_role("button", name="Download case file").click()
    blob = Path(info.value.path()).read_bytes()
    names = zipfile.ZipFile(io.BytesIO(blob)).namelist()
    assert "summary.html" in names and any(n.startswith("photos/") for n in names)
    page.get_by_role("button", name="Seller", exact=True).click()
    expect(page.locator("#seller")).to_be_visible()
    expect(page.locator("#seller-totals")).to_contain_text("confirmed counterfeit")
    # a wrong key is refused with the server's words
    page.fill("#review-key", "wrong")
    page.get_by_role("button", name="Open the queue").click()
    expect(page.locator("#error")).to_contain_text("API key")
    assert foreign == []
