"""The dashboard's "learn from reviews and relabel" button in a real browser: the job runs in the
background, its progress shows on the page, and the group's fit summary appears when it is done."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest
from playwright.sync_api import Page

from tests.browser.conftest import Accounts, Contexts, Demo, api, expect

pytestmark = pytest.mark.browser

GROUP = "palette"  # no other browser test decides on it (see GROUP_OF)
PER_VALUE = 3
JOB_TIMEOUT_MS = 120_000  # learning every group and relabeling the demo on two shared cores


def review_as_truth(page: Page, demo: Demo) -> int:
    """Through the JSON API, as the page's scripts do: accept or correct a few labels per true value."""
    truth = {row["file"]: row[GROUP] for row in csv.DictReader((demo.world / "truth.csv").open())}
    value_of = {image_id: truth.get(Path(path).name) for image_id, path in
                demo.query("SELECT image_id, path FROM image_files WHERE image_id IS NOT NULL")}
    csrf = page.locator('meta[name="csrf-token"]').get_attribute("content")
    labels = api(page, f"/api/labels?group={GROUP}&status=proposed&sort=id&limit=500")["labels"]
    taken: dict[str, int] = {}
    for label in labels:
        value = value_of.get(label["image_id"])
        if not value or taken.get(value, 0) >= PER_VALUE:
            continue
        body = {"action": "accept", "version": label["version"]} if label["value"] == value else \
            {"action": "correct", "version": label["version"], "value": value}
        response = page.request.post(f"/api/labels/{label['id']}/review", data=body,
                                     headers={"X-CSRF-Token": csrf})
        assert response.ok, response.text()
        taken[value] = taken.get(value, 0) + 1
    return sum(taken.values())


def test_admin_learns_from_reviews_and_watches_the_job_finish(contexts: Contexts, demo: Demo) -> None:
    page = contexts.page(Accounts.admin)
    assert review_as_truth(page, demo) >= 2 * PER_VALUE
    page.goto("/")
    button = page.get_by_test_id("learn-start")
    expect(button).to_be_enabled()
    expect(page.get_by_test_id("job-message")).to_have_attribute("aria-live", "polite")

    button.click()
    status = page.get_by_test_id("job-status")
    expect(page.get_by_test_id("job")).to_be_visible()
    expect(status).to_have_text(re.compile(r"^(queued|running|done)$"))
    expect(status).to_have_text("done", timeout=JOB_TIMEOUT_MS)

    job_id = int(page.get_by_test_id("job-id").inner_text())
    assert demo.query("SELECT status FROM jobs WHERE id = ?", job_id) == [("done",)]
    progress = page.get_by_test_id("job-progress")
    assert progress.get_attribute("value") == progress.get_attribute("max")
    expect(page.get_by_test_id("job-message")).to_contain_text("relabeled")
    expect(button).to_be_enabled()  # ready for the next run
    # The group cards were refreshed in place: the palette fit is there without a reload.
    fit = page.get_by_test_id(f"fit-{GROUP}")
    expect(fit).not_to_contain_text("not learned yet")
    reviewed = demo.query("SELECT COUNT(*) FROM labels WHERE \"group\" = ? AND status IN ('accepted', 'corrected')",
                          GROUP)[0][0]
    expect(fit.get_by_test_id("fit-reviewed")).to_have_text(str(reviewed))
    expect(page.get_by_test_id("error-banner")).to_be_hidden()
