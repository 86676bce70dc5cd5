"""The detail page worth opening, in a real browser: the image large with its top edge within the
first 200 px, zoom, each group a compact row, the image shown once (no thumbnail per group),
history and similar images in side panels, and "Find similar" a few Tabs from the top."""

from __future__ import annotations

import pytest

from tests.browser.conftest import Accounts, Contexts, Demo, api, expect, wait_for_images

pytestmark = pytest.mark.browser


def test_the_detail_page_leads_with_the_image(contexts: Contexts, demo: Demo) -> None:
    page = contexts.page(Accounts.second)
    image_id = api(page, "/api/labels?group=handle&limit=1&sort=id")["labels"][0]["image_id"]
    page.goto(f"/images/{image_id}")
    image = page.get_by_test_id("full-image")
    expect(image).to_be_visible()
    wait_for_images(page)
    box = image.bounding_box()
    assert box["y"] <= 200, box
    assert box["width"] >= 400 and box["y"] + box["height"] > 400  # large, not a thumbnail

    labels = api(page, f"/api/images/{image_id}")["labels"]
    rows = page.get_by_test_id("card")
    expect(rows).to_have_count(len(labels))
    heights = rows.evaluate_all("(cs) => cs.map((c) => c.getBoundingClientRect().height)")
    assert max(heights) <= 170, heights  # a compact row per group, not a card with a picture
    # The image once: no thumbnail of it anywhere else on the page.
    thumbs = page.locator(f'img[src*="/images/{image_id}/thumb"]')
    expect(thumbs).to_have_count(0)
    expect(page.locator(f'img[src*="/images/{image_id}/view"], img[src*="/images/{image_id}/full"]')).to_have_count(1)

    # History and similar images sit in side panels, beside the image, not thousands of px down.
    for panel in (page.get_by_test_id("history"), page.get_by_test_id("similar-panel")):
        assert panel.bounding_box()["y"] < 900
    expect(page.get_by_test_id("similar-hit").first).to_be_visible()

    # Zoom: the image grows inside its frame, and "fit" brings it back.
    width = image.bounding_box()["width"]
    page.get_by_role("button", name="zoom in").click()
    assert image.bounding_box()["width"] > 1.4 * width
    page.get_by_role("button", name="fit the image").click()
    assert abs(image.bounding_box()["width"] - width) < 2

    # Find similar: the first stop after the skip link, which is the first Tab from the top.
    page.goto(f"/images/{image_id}")
    expect(image).to_be_visible()
    page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.className") == "skip-link"
    page.keyboard.press("Enter")
    tabs = 0
    while page.evaluate("() => document.activeElement.dataset.testid") != "find-similar":
        tabs += 1
        assert tabs <= 2, "Find similar is more than 2 Tabs past the skip link"
        page.keyboard.press("Tab")
