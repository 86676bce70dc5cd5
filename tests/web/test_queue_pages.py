"""Queue pages walk an index: every sort, paged forward and back, is the queue's one order, and no
page sorts a whole group (the plan SQLite chose for each query says so).

A real catalog made by the migrations and labeled by the real labeling code (the web fixtures'
60 workshop images); a few labels are decided, skipped, leased, assigned, accepted by a run and
audited, so every segment of every order has rows in it.
"""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import event, select, text, update

from labeler.core.fewshot import balanced_order
from labeler.labeling import queue_order
from labeler.review import decisions as review
from labeler.review import leases
from labeler.store import db
from labeler.store.catalog import Label, User
from tests.web.conftest import Users

GROUP = "concept"


def _user(s, name: str) -> int:
    return s.scalar(select(User.id).where(User.name == name))


@pytest.fixture
def team_catalog(web_config):
    """The labeled catalog with a team's traces: rita decided and skipped some, rob holds leases and
    was given one value, a run accepted some, an audit scored some; a few have no margin."""
    with db.session_scope(web_config) as s:
        rita, rob = _user(s, Users.reviewer), _user(s, Users.second)
        labels = list(s.scalars(select(Label).where(Label.group == GROUP).order_by(Label.id)))
        for label, action in zip(labels[:6], ("accept", "reject", "skip", "accept", "skip", "correct")):
            review.decide(s, label.id, action, rita, label.version, "saw" if action == "correct" else None)
        leases.claim(s, rob, [label.id for label in labels[10:14]])
        given = labels[20].value
        leases.assign(s, GROUP, given, [Users.second])
        s.execute(update(Label).where(Label.id.in_([label.id for label in labels[30:38]])).values(status="auto"))
        s.execute(update(Label).where(Label.id.in_([label.id for label in labels[:4]]))
                  .values(suspect_score=0.5))  # two equal scores: the id breaks the tie
        s.execute(update(Label).where(Label.id.in_([label.id for label in labels[40:43]]))
                  .values(margin=None, confidence=None))
        queue_order.store_informative(s, [GROUP])
    return web_config, rita


def _walk(s, rita, sort, status, step=7):
    """Every page forward, then every page back from the last: each as ids, and the pages' totals."""
    forward, after, totals = [], None, set()
    while True:
        page = review.queue_page(s, GROUP, None, status, sort, step, rita, after=after)
        forward += [label.id for label in page.labels]
        totals.add(page.total)
        if not page.more_after:
            break
        after = page.last
    backward, before = [], page.first
    while page.more_before and before is not None:
        page = review.queue_page(s, GROUP, None, status, sort, step, rita, before=before)
        backward = [label.id for label in page.labels] + backward
        before = page.first
    return forward, backward, totals


@pytest.mark.parametrize("status", [None, "proposed", "accepted", "auto"])
def test_every_sort_pages_through_the_queues_one_order_forward_and_back(team_catalog, status):
    config, rita = team_catalog
    with db.session_scope(config) as s:
        for sort in review.SORTS:
            expected = [label.id for label in review.list_labels(s, GROUP, None, status, sort, 500, 0, rita)[0]]
            assert expected, (sort, status)
            forward, backward, totals = _walk(s, rita, sort, status)
            assert forward == expected, (sort, status)
            assert backward == expected[:len(expected) - (len(expected) % 7 or 7)], (sort, status)
            assert totals == {len(expected)}


def test_a_reviewers_queue_leaves_out_others_leases_and_assignments_and_ends_with_their_skips(team_catalog):
    config, rita = team_catalog
    with db.session_scope(config) as s:
        rob = _user(s, Users.second)
        held = set(s.scalars(text("SELECT label_id FROM review_leases")))
        given = s.scalar(text("SELECT value FROM review_assignments"))
        queue, _, _ = _walk(s, rita, "uncertainty", "proposed")
        shown = {label.id: label for label in review.labels_by_id(s, queue)}
        assert not held & set(queue) and all(shown[i].value != given for i in queue)
        skipped = review.skipped(s, rita, queue)
        assert len(skipped) == 2 and set(queue[-2:]) == skipped  # oldest skip first
        robs, _, _ = _walk(s, rob, "uncertainty", "proposed")
        assert held <= set(robs) and any(label.value == given for label in review.labels_by_id(s, robs))


def test_the_total_stops_counting_at_the_cap(team_catalog, monkeypatch):
    config, rita = team_catalog
    monkeypatch.setattr(review, "COUNT_CAP", 5)
    with db.session_scope(config) as s:
        page = review.queue_page(s, GROUP, None, "proposed", "id", 3, rita)
        assert (page.total, page.total_capped, len(page.labels)) == (5, True, 3)
        small = review.queue_page(s, GROUP, None, "accepted", "id", 3, rita)
        assert small.total_capped is False and small.total == 2


def test_no_page_sorts_a_whole_group(team_catalog):
    """Each query of a page walks one of the queue's indexes in its order: SQLite's plan shows no
    sort of the order's leading part and no scan of the labels table (at most, ties sorted)."""
    config, rita = team_catalog
    with db.session_scope(config) as s:
        engine = s.get_bind()
        seen: list[tuple[str, object]] = []

        def remember(conn, cursor, statement, parameters, context, executemany):
            if statement.lstrip().upper().startswith("SELECT") and "ORDER BY" in statement:
                seen.append((statement, parameters))

        event.listen(engine, "before_cursor_execute", remember)
        try:
            for sort in review.SORTS:
                for status in ("proposed", None):
                    first = review.queue_page(s, GROUP, None, status, sort, 5, rita)
                    review.queue_page(s, GROUP, None, status, sort, 5, rita, after=first.last)
        finally:
            event.remove(engine, "before_cursor_execute", remember)
        assert len(seen) > 20
        raw = s.connection().connection.driver_connection
        for statement, parameters in seen:
            plan = [row[3] for row in raw.execute("EXPLAIN QUERY PLAN " + statement, parameters)]
            assert not any(step.startswith("SCAN labels") for step in plan), (statement, plan)
            # only the reviewer's skips (a handful) are sorted, by when they were skipped
            assert "USE TEMP B-TREE FOR ORDER BY" not in plan or "JOIN review_skips" in statement, (statement, plan)


def test_the_informative_rank_is_the_balanced_order_and_moves_only_with_the_proposals(team_catalog):
    config, _ = team_catalog
    with db.session_scope(config) as s:
        rows = s.execute(select(Label.id, Label.predicted, Label.margin, Label.priority, Label.informative_rank)
                         .where(Label.group == GROUP).order_by(Label.id)).all()
        values = sorted({r.predicted or "" for r in rows})
        proposed = np.array([values.index(r.predicted or "") for r in rows])
        margin = np.array([np.inf if r.margin is None else r.margin for r in rows])
        picks = sorted((r for r in rows if r.priority is not None), key=lambda r: r.priority)
        order = [r.id for r in picks] + [rows[i].id for i in balanced_order(proposed, margin)
                                         if rows[i].priority is None]
        assert [r.id for r in sorted(rows, key=lambda r: r.informative_rank)] == order
        assert queue_order.store_informative(s, [GROUP]) == 0  # nothing moved: nothing written


def test_the_numpy_ranks_are_the_sql_windows_order(team_catalog):
    """SQLite stores the order computed with numpy; PostgreSQL runs _RANKED. Both must agree, with
    NULL margins, a NULL prediction, priorities and tied margins in the group."""
    config, _ = team_catalog
    with db.session_scope(config) as s:
        labels = list(s.scalars(select(Label).where(Label.group == GROUP).order_by(Label.id)))
        for label in labels[50:53]:
            label.predicted = None
        for label in labels[60:66]:
            label.margin = 0.25
        for i, label in enumerate(labels[70:75]):
            label.priority = 5 - i
        s.flush()
        expected = dict(s.execute(text(queue_order._RANKED), {"group": GROUP}).all())
        assert queue_order.store_informative(s, [GROUP]) > 0
        stored = dict(s.execute(select(Label.id, Label.informative_rank).where(Label.group == GROUP)).all())
        assert stored == expected


def _exact_progress(s, group):
    """The progress line's counts the slow way: every label of the group, present images only."""
    rows = s.execute(text("SELECT l.status, count(*) FROM labels l JOIN images i ON i.id = l.image_id "
                          "WHERE l.\"group\" = :g AND i.status = 'ok' GROUP BY l.status"), {"g": group}).all()
    counts = dict(rows)
    total = sum(counts.values())
    return total, total - counts.get("proposed", 0)


def test_the_progress_line_reads_the_reviewed_labels_not_the_group(team_catalog):
    """The progress line keeps a group's total until labels are added, and counts only the reviewed
    ones: it stays exact through decisions, a run that adds labels and a missing image, and its
    queries never scan the labels table nor walk the group's proposed labels."""
    from labeler.collection import Collection
    from labeler.core.prompts import load_prompt_set
    from labeler.labeling import bulk as labeling

    config, rita = team_catalog
    with db.session_scope(config) as s:
        dropped = list(s.scalars(select(Label.id).where(Label.group == "size").order_by(Label.id).limit(5)))
        s.execute(text("DELETE FROM labels WHERE id IN (%s)" % ",".join(map(str, dropped))))
    totals = {}
    for group in (GROUP, "size"):
        with db.session_scope(config) as s:
            line = review.progress(s, group)
            assert (line["total"], line["reviewed"]) == _exact_progress(s, group)
            totals[group] = line["total"]
    with db.session_scope(config) as s:  # decisions move the reviewed count, the kept total holds
        label = s.scalars(select(Label).where(Label.group == GROUP, Label.status == "proposed")).first()
        review.decide(s, label.id, "accept", rita, label.version)
        seen: list[tuple[str, object]] = []

        def remember(conn, cursor, statement, parameters, context, executemany):
            if "count(" in statement.lower():
                seen.append((statement, parameters))

        event.listen(s.get_bind(), "before_cursor_execute", remember)
        try:
            line = review.progress(s, GROUP)
        finally:
            event.remove(s.get_bind(), "before_cursor_execute", remember)
        assert (line["total"], line["reviewed"]) == _exact_progress(s, GROUP)
        raw = s.connection().connection.driver_connection
        for statement, parameters in seen:  # the total was kept: only reviewed labels are counted
            plan = " ".join(row[3] for row in raw.execute("EXPLAIN QUERY PLAN " + statement, parameters))
            assert "SCAN labels" not in plan and ("status !=" in statement or "image_id IN" in statement), plan
    # a run that adds labels (the five dropped) makes every process count the group again
    labeling.label_collection(Collection(config), load_prompt_set("workshop"), groups=["size"])
    with db.session_scope(config) as s:
        line = review.progress(s, "size")
        assert (line["total"], line["reviewed"]) == _exact_progress(s, "size") and line["total"] == totals["size"] + 5
        gone = s.scalar(select(Label.image_id).where(Label.group == GROUP, Label.status == "proposed"))
        s.execute(text("UPDATE images SET status = 'missing' WHERE id = :i"), {"i": gone})
    with db.session_scope(config) as s:
        line = review.progress(s, GROUP)
        assert (line["total"], line["reviewed"]) == _exact_progress(s, GROUP)
