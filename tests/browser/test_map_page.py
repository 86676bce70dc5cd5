"""/map in a real browser: the canvas paints, a box drawn on it opens a queue of exactly those images,
a bulk accept that previews only them, and a search among them."""

from __future__ import annotations

import json

import pytest

from tests.browser.conftest import Accounts, api, expect
from tests.browser.test_accessibility import AXE_OPTIONS, Axe, blocking_violations
from tests.cli import Cli

pytestmark = pytest.mark.browser


def test_the_map_paints_and_a_box_selection_opens_a_queue_of_exactly_those_images(demo, contexts):
    Cli(demo.home, demo.model).json("map")  # the running server reads the new layout on its next request
    page = contexts.page(Accounts.reviewer)
    page.get_by_test_id("nav-map").click()
    canvas = page.get_by_test_id("map-canvas")
    expect(canvas).to_have_attribute("data-painted", "points")
    assert page.get_by_test_id("map-cluster").count() >= 2
    results = Axe().run(page, options=AXE_OPTIONS).response  # the table of regions is the canvas's alternative
    assert not blocking_violations(results), blocking_violations(results)
    whole = api(page, "/api/map")
    box = canvas.bounding_box()
    page.get_by_test_id("map-mode-box").click()
    with page.expect_request("**/api/map/select") as sent:
        page.mouse.move(box["x"] + box["width"] * 0.2, box["y"] + box["height"] * 0.2)
        page.mouse.down()
        page.mouse.move(box["x"] + box["width"] * 0.6, box["y"] + box["height"] * 0.7, steps=5)
        page.mouse.up()
    x0, y0, x1, y1 = json.loads(sent.value.post_data)["bbox"]
    x0, x1, y0, y1 = min(x0, x1), max(x0, x1), min(y0, y1), max(y0, y1)
    want = sorted(i for i, x, y in zip(whole["ids"], whole["x"], whole["y"]) if x0 <= x <= x1 and y0 <= y <= y1)
    link = page.get_by_test_id("map-review-link")
    expect(link).to_have_text(f"Review these {len(want)}")
    assert want
    accept_url = page.get_by_test_id("map-accept-link").get_attribute("href")
    search_url = page.get_by_test_id("map-search-link").get_attribute("href")
    link.click()
    expect(page.get_by_test_id("queue-total")).to_contain_text(f"{len(want)} label")
    shown = []
    while True:
        data = json.loads(page.locator("#review-data").text_content())
        shown += [card["image_id"] for card in data["cards"]]
        if not data.get("next"):
            break
        page.goto(data["next"])
    assert sorted(shown) == want
    # the bulk accept opens on its preview, of the selection's proposals only; cancelled here
    page.goto(accept_url)
    dialog = page.get_by_test_id("above-dialog")
    expect(dialog).to_be_visible()
    expect(page.get_by_test_id("above-title")).to_contain_text("in the map selection")
    page.get_by_test_id("above-threshold").fill("0")
    page.get_by_test_id("above-threshold").press("Enter")
    selection = dict(part.split("=") for part in accept_url.split("#")[0].split("?")[1].split("&"))
    preview = api(page, f"/api/labels/accept-above?group={selection['group']}&threshold=0"
                        f"&selection={selection['selection']}&list=1")
    assert 0 < len(preview["labels"]) <= len(want)
    expect(page.get_by_test_id("above-confirm")).to_have_text(f"Accept these {len(preview['labels'])} (Enter)")
    ids = ",".join(str(label["id"]) for label in preview["labels"][:200])
    if ids:
        assert {card["image_id"] for card in api(page, f"/api/review/cards?ids={ids}")["cards"]} <= set(want)
    page.get_by_test_id("above-cancel").click()
    expect(dialog).to_be_hidden()
    # a search within the selection: every hit is one of its images
    page.goto(search_url)
    expect(page.get_by_test_id("search-selection")).to_contain_text(f"{len(want)} images of a map selection")
    page.get_by_test_id("search-query").fill("a tool")
    page.get_by_test_id("search-submit").click()
    expect(page.get_by_test_id("search-count")).to_be_visible()
    hits = [int(h) for h in page.get_by_test_id("hit").evaluate_all("els => els.map(e => e.dataset.imageId)")]
    assert hits and set(hits) <= set(want)
