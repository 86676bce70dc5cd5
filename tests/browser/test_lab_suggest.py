"""The prompt lab's "Suggest prompts from reviews" in a real browser: the search runs as a
background job with its progress on the page, the suggestions appear when it is done, and the
admin adopts one option's prompts, then the rest, each a new version of the set."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest
import yaml
from playwright.sync_api import Page

from tests.browser.conftest import GROUP_OF, Accounts, Contexts, Demo, api, expect

pytestmark = pytest.mark.browser

GROUP = GROUP_OF["lab_suggest"]
PER_VALUE = 2
JOB_TIMEOUT_MS = 120_000  # encoding ~1,200 candidate prompts and six searches on two shared cores


def review_as_truth(page: Page, demo: Demo) -> int:
    """Through the JSON API, as the page's scripts do: accept or correct a few labels per true value."""
    truth = {row["file"]: row[GROUP] for row in csv.DictReader((demo.world / "truth.csv").open())}
    value_of = {image_id: truth.get(Path(path).name) for image_id, path in
                demo.query("SELECT image_id, path FROM image_files WHERE image_id IS NOT NULL")}
    csrf = page.locator('meta[name="csrf-token"]').get_attribute("content")
    taken: dict[str, int] = {}
    for label in api(page, f"/api/labels?group={GROUP}&status=proposed&sort=id&limit=500")["labels"]:
        value = value_of.get(label["image_id"])
        if not value or taken.get(value, 0) >= PER_VALUE:
            continue
        body = {"action": "accept", "version": label["version"]} if label["value"] == value else \
            {"action": "correct", "version": label["version"], "value": value}
        response = page.request.post(f"/api/labels/{label['id']}/review", data=body, headers={"X-CSRF-Token": csrf})
        assert response.ok, response.text()
        taken[value] = taken.get(value, 0) + 1
    return len(taken)


def saved_prompts(demo: Demo, option: str) -> list[str]:
    data = yaml.safe_load((demo.home / "prompt_sets" / "workshop.yaml").read_text())
    return [p["text"] for p in data["groups"][GROUP]["options"][option]["prompts"]]


def test_admin_gets_prompts_suggested_from_reviews_and_adopts_them(contexts: Contexts, demo: Demo) -> None:
    page = contexts.page(Accounts.admin)
    assert review_as_truth(page, demo) >= 2
    page.goto(f"/lab?set=workshop&group={GROUP}")
    page.get_by_test_id("lab-suggest").click()

    # The request only starts the job; the page follows it and shows the suggestions when done.
    expect(page.get_by_test_id("job-kind")).to_have_text("suggest-prompts")
    expect(page.get_by_test_id("lab-suggest-summary")).to_be_visible(timeout=JOB_TIMEOUT_MS)
    expect(page.get_by_test_id("job-status")).to_have_text("done")
    progress = page.get_by_test_id("job-progress")
    assert progress.get_attribute("value") == progress.get_attribute("max")
    expect(page.get_by_test_id("lab-suggest-cv")).to_have_text(re.compile(r"^\d+\.\d% → \d+\.\d%$"))
    suggestions = page.get_by_test_id("lab-suggestion")
    options = [suggestions.nth(i).get_attribute("data-option") for i in range(suggestions.count())]
    assert len(options) >= 2
    for i in range(len(options)):
        card = suggestions.nth(i)
        expect(card.get_by_test_id("lab-suggestion-gain")).to_contain_text("right with only these prompts")
        assert card.get_by_test_id("lab-suggestion-prompts").locator("li").count() >= 1

    adoptable = page.locator('[data-testid="lab-suggestion"][data-state="adopt"]')
    if adoptable.count() == 0:  # the search kept every option's prompts: nothing may be adopted
        expect(page.get_by_test_id("lab-adopt-all")).to_be_disabled()
        return
    first = adoptable.first
    option = first.get_attribute("data-option")
    suggested = first.get_by_test_id("lab-suggestion-prompts").locator("li").all_inner_texts()
    first.get_by_test_id("lab-adopt").click()
    expect(page.get_by_test_id("flash")).to_contain_text(f"Adopted the suggested prompts for {GROUP} = {option}")
    expect(page.locator(f'[data-testid="lab-suggestion"][data-option="{option}"]')).to_have_attribute(
        "data-state", "adopted")
    assert saved_prompts(demo, option) == suggested

    left = page.locator('[data-testid="lab-suggestion"][data-state="adopt"]').count()
    if left:
        page.get_by_test_id("lab-adopt-all").click()
        expect(page.get_by_test_id("flash")).to_contain_text("Adopted the suggested prompts")
    expect(page.locator('[data-testid="lab-suggestion"][data-state="adopt"]')).to_have_count(0)
    expect(page.get_by_test_id("lab-adopt-all")).to_be_disabled()
