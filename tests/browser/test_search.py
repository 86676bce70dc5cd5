"""Free-text search in the browser finds what the words describe (needs labeler-tiny's real weights)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from tests.browser.conftest import Accounts, Contexts, Demo, api, expect

pytestmark = pytest.mark.browser

QUERY = "metal hammer with wooden handle"


def test_search_for_a_hammer_shows_hammers_first(contexts: Contexts, demo: Demo) -> None:
    page = contexts.page(Accounts.reviewer)
    page.get_by_test_id("nav-search").click()
    page.get_by_test_id("search-query").fill(QUERY)
    page.get_by_test_id("search-submit").click()

    expect(page.get_by_test_id("search-echo")).to_have_text(QUERY)
    hits = page.get_by_test_id("hit")
    expect(hits.first).to_be_visible()
    top_ids = [int(i) for i in hits.evaluate_all("(cards) => cards.map((c) => c.dataset.imageId)")[:10]]
    assert len(top_ids) == 10
    # The world's truth, mapped to catalog ids through each image's path.
    with (demo.world / "truth.csv").open(newline="", encoding="utf-8") as fh:
        concept_of_file = {row["file"]: row["concept"] for row in csv.DictReader(fh)}
    concepts = [concept_of_file[Path(api(page, f"/api/images/{i}")["path"]).name] for i in top_ids]
    assert concepts[0] == "hammer", concepts
    assert concepts.count("hammer") >= 6, concepts
    # Each result card shows the image's labels.
    expect(hits.first.locator(".hit-labels")).to_contain_text("concept:")
