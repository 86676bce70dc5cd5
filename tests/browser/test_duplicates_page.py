"""The duplicates page in a real browser, on a collection of its own (marks take images out of
every queue, so the shared demo's queues stay as the other browser tests expect them)."""

from __future__ import annotations

import re
import sqlite3

import numpy as np
import pytest
from PIL import Image

from labeler.collection import Collection
from labeler.config import Config
from labeler.curation import copies
from labeler.ingest.run import index_paths
from labeler.store import db
from tests.browser.conftest import VIEWPORT, Accounts, add_accounts, expect, login, serving, wait_for_images
from tests.browser.test_accessibility import AXE_OPTIONS, Axe, blocking_violations
from tests.cli import Cli

pytestmark = pytest.mark.browser


@pytest.fixture
def duplicated(world, model_spec, tmp_path):
    """A home holding the test world, a copy of three of its images, near groups and the accounts."""
    folder = tmp_path / "copies"
    folder.mkdir()
    rng = np.random.default_rng(5)
    for n, path in enumerate(sorted(world.glob("img_*"))[10:13]):
        copies.make_copy(Image.open(path), "jpeg", rng).save(folder / f"copy_{n}.png")
    home = tmp_path / "home"
    index_paths(Collection(Config(home=home, model=model_spec)), [world, folder])
    db.dispose_engines()
    cli = Cli(home, model_spec)
    report = cli.json("duplicates", "--level", "near")
    cli.json("label", "--prompt-set", "workshop", "--group", "color")
    add_accounts(home, model_spec)
    return home, report


def _marks(home) -> list[tuple]:
    with sqlite3.connect(f"file:{home / 'catalog.db'}?mode=ro", uri=True) as con:
        return con.execute("SELECT image_id, duplicate_of, undone_at IS NULL FROM duplicate_marks ORDER BY id").fetchall()


def test_keep_one_mark_the_rest_with_one_key_then_undo(duplicated, model_spec, browser):
    home, report = duplicated
    group = next(g for g in report["groups"] if any("/copies/" in img["path"] for img in g["images"]))
    ids = [img["image_id"] for img in group["images"]]
    with serving(home, model_spec) as url:
        context = browser.new_context(base_url=url, viewport=VIEWPORT)
        context.set_default_timeout(20_000)
        page = context.new_page()
        login(page, Accounts.reviewer, next_path="/duplicates")
        page.goto("/duplicates")
        section = page.locator(f"[data-testid=dup-group][data-group-id='{group['id']}']")
        expect(section.get_by_test_id("dup-image")).to_have_count(len(ids))
        expect(section.get_by_test_id("dup-suggested")).to_have_count(1)
        expect(section.locator("img")).to_have_count(len(ids))
        wait_for_images(page)  # every thumbnail loads
        assert all(img.evaluate("(el) => el.naturalWidth > 0") for img in section.locator("img").all())
        tops = {round(box["y"]) for box in (img.bounding_box() for img in section.locator("img").all())}
        assert len(tops) == 1  # side by side
        expect(section).to_contain_text(re.compile(r"\d+ × \d+, [\d.]+ KB"))

        other = next(i for i in ids if i != group["keep"])  # keep the one not suggested
        radio = section.locator(f"[data-testid=dup-image][data-image-id='{other}'] [data-testid=dup-keep]")
        radio.check()
        radio.focus()
        page.keyboard.press("m")
        expect(page.get_by_test_id("flash")).to_contain_text(f"Group {group['id']}: kept image {other}, marked")
        marks = _marks(home)
        assert sorted(m[0] for m in marks) == sorted(i for i in ids if i != other)
        assert all(m[1] == other and m[2] for m in marks)
        section = page.locator(f"[data-testid=dup-group][data-group-id='{group['id']}']")
        expect(section.get_by_test_id("dup-marked")).to_have_count(len(ids) - 1)

        listed = page.request.get("/api/duplicates?level=near").json()
        shown = next(g for g in listed["groups"] if g["id"] == group["id"])
        assert {i["image_id"]: i["duplicate_of"] for i in shown["images"]} == \
            {i: (None if i == other else other) for i in ids}
        queue = page.request.get("/api/review/queue?group=color&status=proposed&sort=id").json()
        queued = {card["image_id"] for card in queue["cards"]}
        assert other in queued and not (set(ids) - {other}) & queued

        section.get_by_test_id("dup-unmark").click()
        expect(page.get_by_test_id("flash")).to_contain_text(f"Group {group['id']}: {len(ids) - 1} images unmarked")
        assert all(not standing for _, _, standing in _marks(home))

        checked = browser.new_context(base_url=url, viewport=VIEWPORT, bypass_csp=True)  # axe needs eval
        axe_page = checked.new_page()
        login(axe_page, Accounts.reviewer)
        axe_page.goto("/duplicates")
        results = Axe().run(axe_page, options=AXE_OPTIONS).response
        assert len(results["passes"]) > 10 and not blocking_violations(results), blocking_violations(results)
        checked.close()

        bad = page.request.get("/api/duplicates?level=blurry")
        assert bad.status == 400 and "unknown level 'blurry'" in bad.json()["error"]
        assert page.request.get("/duplicates?level=blurry").status == 400
        context.close()
