"""The prompt lab's "Run labeling" in a real browser: the request only starts a background job,
the lab page follows its progress and shows the result line when it is done."""

from __future__ import annotations

import re

import pytest

from tests.browser.conftest import Accounts, Contexts, Demo, expect

pytestmark = pytest.mark.browser

JOB_TIMEOUT_MS = 120_000  # relabeling the demo on two shared cores


def test_admin_runs_labeling_from_the_lab_and_watches_the_job_finish(contexts: Contexts, demo: Demo) -> None:
    page = contexts.page(Accounts.admin)
    page.goto("/lab?set=workshop&group=concept&option=hammer")
    expect(page.get_by_test_id("job")).to_be_hidden()  # no labeling job yet
    # The strategy the demo was labeled with, so the labels other browser tests read stay as they are.
    strategy = page.get_by_test_id("lab-strategy").input_value()

    page.get_by_test_id("lab-run").click()
    expect(page).to_have_url(re.compile(r"/lab\?set=workshop&group=concept&option=hammer"))
    expect(page.get_by_test_id("job")).to_be_visible()
    expect(page.get_by_test_id("job-kind")).to_have_text("label")
    expect(page.get_by_test_id("job-status")).to_have_text("done", timeout=JOB_TIMEOUT_MS)
    expect(page.get_by_test_id("job-message")).to_have_text(re.compile(
        rf"^Labeled with workshop v\S+ \({strategy}\): \d+ labels, \d+ changed, \d+ reviewed kept\.$"))
    expect(page.get_by_test_id("lab-run")).to_be_enabled()

    job_id = int(page.get_by_test_id("job-id").inner_text())
    assert demo.query("SELECT kind, status, done, total FROM jobs WHERE id = ?", job_id) == \
        [("label", "done", demo.query("SELECT count(*) FROM embeddings")[0][0],
          demo.query("SELECT count(*) FROM embeddings")[0][0])]
    progress = page.get_by_test_id("job-progress")
    assert progress.get_attribute("value") == progress.get_attribute("max")


def test_the_lab_opens_where_the_collection_is_and_a_new_group_never_404s(contexts: Contexts, demo: Demo) -> None:
    page = contexts.page(Accounts.admin)
    page.goto("/lab")
    # The demo was labeled with workshop: the lab opens on it and on its first group, not on
    # the alphabetically first file (colors) or group (color).
    expect(page.get_by_test_id("lab-set")).to_have_value("workshop")
    expect(page.get_by_test_id("lab-group")).to_have_value("concept")
    option = page.get_by_test_id("lab-option").input_value()

    page.get_by_test_id("lab-group").select_option("material")
    page.get_by_test_id("lab-open").click()
    expect(page.get_by_test_id("lab-group")).to_have_value("material")
    expect(page.get_by_test_id("lab-prompts")).to_be_visible()
    assert page.get_by_test_id("lab-option").input_value() != option
    assert "no option" not in page.content()
