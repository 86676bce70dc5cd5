"""The queue's grid built for bulk work, at 1440 × 900: at least 20 cards fully visible at the
default density, the proposal as a pill on the image, one primary action per card, the file name
on hover, cards that keep their height after a correction, and the S/M/L density control."""

from __future__ import annotations

import re

import pytest

from tests.browser.conftest import TIMEOUT_MS, Accounts, Contexts, Demo, api, expect, login, queue_url

pytestmark = pytest.mark.browser

DESKTOP = {"width": 1440, "height": 900}
GROUP = "size"  # bulk_threshold's group: one correction here, by another reviewer
FULLY_VISIBLE = """() => Array.from(document.querySelectorAll('[data-testid=card]')).filter((c) => {
  const r = c.getBoundingClientRect();
  return r.top >= 0 && r.left >= 0 && r.bottom <= innerHeight && r.right <= innerWidth; }).length"""


def test_the_grid_shows_twenty_cards_and_keeps_them_steady(contexts: Contexts, demo: Demo) -> None:
    context = contexts.browser.new_context(base_url=demo.url, viewport=DESKTOP)
    context.set_default_timeout(TIMEOUT_MS)
    contexts.opened.append(context)
    page = context.new_page()
    login(page, Accounts.second)
    page.goto(queue_url(GROUP, status=""))
    cards = page.get_by_test_id("card")
    expect(cards.first).to_be_visible()
    assert page.get_by_test_id("density").input_value() == "m"
    assert page.evaluate(FULLY_VISIBLE) >= 20

    first = cards.first
    image = first.locator("img").bounding_box()
    pill = first.get_by_test_id("value").bounding_box()
    assert image["y"] < pill["y"] and pill["y"] + pill["height"] <= image["y"] + image["height"], (image, pill)
    # One primary action: Accept is filled, the others are not.
    colours = first.locator(".actions button").evaluate_all(
        "(bs) => bs.map((b) => [b.dataset.action, getComputedStyle(b).backgroundColor])")
    filled = [action for action, colour in colours if colour not in ("rgba(0, 0, 0, 0)", "transparent")]
    assert filled == ["accept"], colours
    # The file name shows over the image on hover (and on the current card).
    name = first.get_by_test_id("detail-link").get_attribute("data-name")
    assert name and name.startswith("img_")
    first.hover()
    shown = first.get_by_test_id("detail-link").evaluate(
        "(a) => [getComputedStyle(a, '::after').content, getComputedStyle(a, '::after').opacity]")
    assert shown == [f'"{name}"', "1"], shown
    # Correct, None and Skip sit apart, and the file name starts at the card's left edge: the
    # checkbox is at the image's top right, not in front of the name.
    boxes = [first.get_by_test_id(action).bounding_box() for action in ("accept", "correct", "reject", "skip")]
    apart = [max(b["x"] - a["x"] - a["width"], a["x"] - b["x"] - b["width"], b["y"] - a["y"] - a["height"],
                 a["y"] - b["y"] - b["height"]) for i, a in enumerate(boxes) for b in boxes[i + 1:]]
    assert min(apart) >= 3.5, apart
    clipped = first.locator(".actions button").evaluate_all(
        "(bs) => bs.filter((b) => b.scrollWidth > b.clientWidth).map((b) => [b.textContent, b.scrollWidth, b.clientWidth])")
    assert not clipped  # each name whole in its button
    select = first.get_by_test_id("select").bounding_box()
    assert select["x"] > image["x"] + image["width"] / 2 and select["y"] < image["y"] + 40, (select, image)
    assert float(first.get_by_test_id("detail-link").evaluate("(a) => getComputedStyle(a, '::after').paddingLeft")[:-2]) < 8

    # A correction leaves every card the height it had: the current card's buttons stay put.
    label_id = page.locator('[data-testid="card"].status-proposed').first.get_attribute("data-label-id")
    proposed = page.locator(f'[data-testid="card"][data-label-id="{label_id}"]')
    height = proposed.bounding_box()["height"]
    proposed.locator("button[data-option]").first.click()
    expect(proposed.get_by_test_id("status")).to_have_text("corrected")
    assert abs(proposed.bounding_box()["height"] - height) < 1

    with page.expect_response("**/api/preferences"):
        page.get_by_test_id("density").select_option("s")
    assert page.evaluate(FULLY_VISIBLE) > 20
    page.reload()
    expect(cards.first).to_be_visible()
    assert page.get_by_test_id("density").input_value() == "s"  # kept, in the user's preferences
    assert api(page, "/api/preferences")["preferences"]["density"] == "s"
    with page.expect_response("**/api/preferences"):
        page.get_by_test_id("density").select_option("l")
    assert page.evaluate(FULLY_VISIBLE) < 20
    with page.expect_response("**/api/preferences"):
        page.get_by_test_id("density").select_option("m")  # as the other tests of this reviewer expect


def test_range_select_by_keys_and_shift_click_then_all_and_invert(contexts: Contexts, demo: Demo) -> None:
    page = contexts.page(Accounts.second)
    page.goto(queue_url(GROUP, status=""))
    cards = page.get_by_test_id("card")
    expect(cards.first).to_have_class(re.compile(r"\bfocused\b"))
    count = page.get_by_test_id("selected-count")
    selected = "(cs) => cs.map((c, i) => c.querySelector('[data-testid=select]').checked ? i : -1).filter((i) => i >= 0)"

    for _ in range(3):
        page.keyboard.press("Shift+J")  # this card and the next, three times: cards 0-3
    assert cards.evaluate_all(selected) == [0, 1, 2, 3]
    expect(cards.nth(3)).to_have_class(re.compile(r"\bfocused\b"))
    page.keyboard.press("Shift+I")  # invert
    total = cards.count()
    assert cards.evaluate_all(selected) == list(range(4, total))
    page.keyboard.press("Shift+X")  # not all selected: select all
    expect(count).to_have_text(str(total))
    page.keyboard.press("Shift+X")  # all selected: none
    expect(count).to_have_text("0")

    cards.nth(5).get_by_test_id("select").click()
    cards.nth(9).get_by_test_id("select").click(modifiers=["Shift"])  # 5 to 9
    assert cards.evaluate_all(selected) == [5, 6, 7, 8, 9]
    expect(count).to_have_text("5")


def test_grouping_by_proposed_value_makes_the_odd_one_out_stand_out(contexts: Contexts) -> None:
    page = contexts.page(Accounts.second)
    # One label the model proposed A for, corrected to B: among B's labels it is the odd one out.
    proposed = api(page, f"/api/labels?group={GROUP}&status=proposed&sort=id&limit=500")["labels"]
    counts = {}
    for label in proposed:
        counts[label["value"]] = counts.get(label["value"], 0) + 1
    common = max(counts, key=counts.get)
    # A proposal no card of common's queue has yet (other tests correct labels of this group too).
    there = {label["predicted"] for label in api(page, f"/api/labels?group={GROUP}&value={common}&status=&limit=500")["labels"]}
    odd = next(label for label in proposed if label["value"] not in (common, None, *there))
    csrf = page.evaluate("() => document.querySelector('meta[name=\"csrf-token\"]').content")
    assert page.request.post(f"/api/labels/{odd['id']}/review", headers={"X-CSRF-Token": csrf},
                             data={"action": "correct", "value": common, "version": odd["version"]}).ok
    page.goto(queue_url(GROUP, status="", value=common))
    cards = page.get_by_test_id("card")
    expect(cards.first).to_have_class(re.compile(r"\bfocused\b"))
    before = cards.evaluate_all("(cs) => cs.map((c) => c.dataset.labelId)")
    assert str(odd["id"]) in before and len(before) > 2
    cards.nth(1).focus()
    focused = cards.nth(1).get_attribute("data-label-id")

    page.keyboard.press("Shift+G")
    expect(page.get_by_test_id("group-by-value")).to_be_checked()
    runs = page.evaluate("""() => Array.from(document.querySelectorAll('[data-testid=queue-grid] > *')).reduce((out, el) => {
        if (el.dataset.testid === 'value-group') out.push({value: el.dataset.value, odd: el.classList.contains('odd-one-out'), cards: []});
        else out[out.length - 1].cards.push({id: el.dataset.labelId, odd: el.classList.contains('odd-one-out'),
                                             value: el.querySelector('[data-testid=detail-link] img').alt.split(', proposed ')[1]});
        return out; }, [])""")
    assert sum(len(run["cards"]) for run in runs) == len(before)
    assert len({run["value"] for run in runs}) == len(runs)  # one run per proposed value
    for run in runs:
        assert {card["value"] for card in run["cards"]} == {run["value"]}
        alone = len(run["cards"]) == 1
        assert run["odd"] == alone and all(card["odd"] == alone for card in run["cards"]), run
    assert [len(run["cards"]) for run in runs] == sorted((len(run["cards"]) for run in runs), reverse=True)
    assert runs[0]["value"] == common
    assert {"value": odd["value"], "odd": True, "cards": [{"id": str(odd["id"]), "odd": True, "value": odd["value"]}]} in runs
    assert page.evaluate("() => document.activeElement.dataset.labelId") == focused  # the cursor stays

    page.keyboard.press("Shift+G")  # back to the queue's order
    expect(page.get_by_test_id("value-group")).to_have_count(0)
    assert cards.evaluate_all("(cs) => cs.map((c) => c.dataset.labelId)") == before
