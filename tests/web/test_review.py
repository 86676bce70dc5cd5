"""Review decisions as catalog logic: events beside state, version checks, undo and bulk accepts."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from labeler.store import db
from labeler.review import decisions as review
from labeler.store.catalog import Label, ReviewEvent, User
from labeler.review.decisions import ReviewError, StaleLabel
from tests.web.conftest import Users


def _user_id(web_config, name: str) -> int:
    with db.session_scope(web_config) as s:
        return s.scalar(select(User.id).where(User.name == name))


def _first_label(web_config, group: str = "concept") -> Label:
    with db.session_scope(web_config) as s:
        return s.scalars(select(Label).where(Label.group == group, Label.status == "proposed")
                         .order_by(Label.id)).first()


def _events(web_config, label_id: int) -> list[ReviewEvent]:
    with db.session_scope(web_config) as s:
        return list(s.scalars(select(ReviewEvent).where(ReviewEvent.label_id == label_id).order_by(ReviewEvent.id)))


def _decide(web_config, label_id, action, user_id, version, value=None) -> Label:
    with db.session_scope(web_config) as s:
        return review.decide(s, label_id, action, user_id, version, value)


def test_accept_keeps_the_proposal_and_records_who_and_what(web_config):
    rita = _user_id(web_config, Users.reviewer)
    label = _first_label(web_config)
    after = _decide(web_config, label.id, "accept", rita, label.version)
    assert (after.status, after.value, after.reviewed_by, after.version) == ("accepted", label.value, rita,
                                                                             label.version + 1)
    assert after.reviewed_at is not None
    [event] = _events(web_config, label.id)
    assert (event.action, event.user_id, event.before_value, event.after_value, event.before_status,
            event.after_status) == ("accept", rita, label.value, label.value, "proposed", "accepted")


def test_correct_reject_and_bad_corrections(web_config):
    rita = _user_id(web_config, Users.reviewer)
    label = _first_label(web_config)
    corrected = _decide(web_config, label.id, "correct", rita, label.version, "  wrench ")
    assert (corrected.status, corrected.value, corrected.predicted) == ("corrected", "wrench", label.predicted)
    rejected = _decide(web_config, label.id, "reject", rita, corrected.version)
    assert (rejected.status, rejected.value) == ("rejected", None)
    for bad in ("", "   ", None, "x" * 257):
        with pytest.raises(ReviewError):
            _decide(web_config, label.id, "correct", rita, rejected.version, bad)
    with pytest.raises(ReviewError, match="unknown action"):
        _decide(web_config, label.id, "delete", rita, rejected.version)
    assert [e.action for e in _events(web_config, label.id)] == ["correct", "reject"]


def test_skip_changes_and_records_nothing(web_config):
    label = _first_label(web_config)
    after = _decide(web_config, label.id, "skip", None, label.version)
    assert (after.status, after.version) == ("proposed", label.version)
    assert _events(web_config, label.id) == []


def test_undo_steps_back_through_decisions_like_a_stack(web_config):
    rita = _user_id(web_config, Users.reviewer)
    label = _first_label(web_config)
    a = _decide(web_config, label.id, "accept", rita, label.version)
    c = _decide(web_config, label.id, "correct", rita, a.version, "saw")
    u1 = _decide(web_config, label.id, "undo", rita, c.version)
    assert (u1.status, u1.value) == ("accepted", label.value)
    u2 = _decide(web_config, label.id, "undo", rita, u1.version)
    assert (u2.status, u2.value, u2.reviewed_by, u2.reviewed_at) == ("proposed", label.value, None, None)
    with pytest.raises(ReviewError, match="no decision to undo"):
        _decide(web_config, label.id, "undo", rita, u2.version)
    # Nothing is erased: the history still holds every step.
    assert [e.action for e in _events(web_config, label.id)] == ["accept", "correct", "undo", "undo"]


def test_a_decision_on_a_stale_version_is_refused_and_changes_nothing(web_config):
    rita, rob = _user_id(web_config, Users.reviewer), _user_id(web_config, Users.second)
    label = _first_label(web_config)
    _decide(web_config, label.id, "correct", rob, label.version, "pliers")
    with pytest.raises(StaleLabel) as info:
        _decide(web_config, label.id, "accept", rita, label.version)
    assert info.value.current_version == label.version + 1
    assert "changed by someone else" in str(info.value)
    with db.session_scope(web_config) as s:
        now = s.get(Label, label.id)
        assert (now.value, now.status, now.reviewed_by) == ("pliers", "corrected", rob)
    assert len(_events(web_config, label.id)) == 1


def test_a_race_between_check_and_write_is_caught_by_the_versioned_update(web_config):
    rita, rob = _user_id(web_config, Users.reviewer), _user_id(web_config, Users.second)
    label = _first_label(web_config)
    factory = db.session_factory(web_config)
    slow = factory()
    try:
        slow.get(Label, label.id)  # rita's session read the label (version v) ...
        _decide(web_config, label.id, "reject", rob, label.version)  # ... rob commits first ...
        with pytest.raises(StaleLabel):  # ... rita's UPDATE ... WHERE version = v matches nothing
            review.decide(slow, label.id, "accept", rita, label.version)
        slow.rollback()
    finally:
        slow.close()
    with db.session_scope(web_config) as s:
        assert s.get(Label, label.id).status == "rejected"
    assert [e.action for e in _events(web_config, label.id)] == ["reject"]


def test_accept_many_applies_fresh_ones_and_reports_stale_ones(web_config):
    rita = _user_id(web_config, Users.reviewer)
    with db.session_scope(web_config) as s:
        labels = list(s.scalars(select(Label).where(Label.group == "concept").order_by(Label.id).limit(3)))
    stale = labels[1]
    _decide(web_config, stale.id, "reject", rita, stale.version)
    with db.session_scope(web_config) as s:
        result = review.accept_many(s, [(l.id, l.version) for l in labels] + [(10**9, 1)], rita)
    assert result.accepted == [labels[0].id, labels[2].id]
    assert [c["id"] for c in result.conflicts] == [stale.id, 10**9]
    with db.session_scope(web_config) as s:
        assert s.get(Label, stale.id).status == "rejected"
        assert s.get(Label, labels[0].id).status == "accepted"


def test_accept_above_threshold_matches_its_preview_and_spares_reviewed_labels(web_config):
    rita = _user_id(web_config, Users.reviewer)
    with db.session_scope(web_config) as s:
        confidences = sorted(s.scalars(select(Label.confidence).where(Label.group == "concept")))
    threshold = confidences[len(confidences) // 2]
    with db.session_scope(web_config) as s:
        top = s.scalars(select(Label).where(Label.group == "concept", Label.confidence >= threshold)
                        .order_by(Label.id)).first()
    _decide(web_config, top.id, "correct", rita, top.version, "mug")
    with db.session_scope(web_config) as s:
        expected = s.scalar(select(func.count()).select_from(Label).where(
            Label.group == "concept", Label.confidence >= threshold, Label.status == "proposed",
            Label.value.is_not(None)))
        assert review.preview_accept_above(s, "concept", threshold) == expected > 0
        assert review.accept_above(s, "concept", threshold, rita) == expected
        assert review.preview_accept_above(s, "concept", threshold) == 0
        assert s.get(Label, top.id).value == "mug"
        with pytest.raises(ReviewError):
            review.accept_above(s, "concept", 1.5, rita)


def test_queue_order_and_filters(web_config):
    with db.session_scope(web_config) as s:
        labels, total = review.list_labels(s, group="concept", sort="uncertainty", limit=500)
        margins = [l.margin for l in labels]
        assert margins == sorted(margins) and total == len(labels) > 0
        by_conf, _ = review.list_labels(s, group="concept", sort="confidence", limit=500)
        assert [l.confidence for l in by_conf] == sorted((l.confidence for l in labels), reverse=True)
        value = labels[0].value
        only, n = review.list_labels(s, group="concept", value=value, limit=500)
        assert n == len(only) and {l.value for l in only} == {value}
        page, _ = review.list_labels(s, group="concept", limit=5, offset=5)
        assert [l.id for l in page] == [l.id for l in labels[5:10]]
        with pytest.raises(ReviewError):
            review.list_labels(s, status="maybe")


def test_stats_count_every_label_once(web_config):
    rita = _user_id(web_config, Users.reviewer)
    label = _first_label(web_config)
    _decide(web_config, label.id, "accept", rita, label.version)
    with db.session_scope(web_config) as s:
        stats = review.stats(s)
        n_concept = s.scalar(select(func.count()).select_from(Label).where(Label.group == "concept"))
    concept = stats["concept"]
    assert concept["total"] == n_concept == sum(concept["options"].values()) == sum(concept["histogram"])
    assert concept["reviewed"] == 1 and concept["statuses"]["accepted"] == 1
    assert len(concept["histogram"]) == review.HISTOGRAM_BINS
    assert set(stats) >= {"concept", "color"}


def test_stats_are_the_labels_of_present_images_counted_row_by_row(web_config):
    """The index-only counts, less those of images that are gone, equal counting each present label."""
    from labeler.store.catalog import Image

    rita = _user_id(web_config, Users.reviewer)
    label = _first_label(web_config)
    _decide(web_config, label.id, "correct", rita, label.version, "saw")
    with db.session_scope(web_config) as s:
        gone = s.scalars(select(Image).where(Image.id != label.image_id).order_by(Image.id).limit(3)).all()
        gone[0].status, gone[1].status, gone[2].status = "missing", "missing", "deleted"
        s.scalars(select(Label).where(Label.group == "color")).first().confidence = None
    with db.session_scope(web_config) as s:
        stats = review.stats(s)
        rows = s.execute(select(Label.group, Label.value, Label.status, Label.confidence)
                         .join(Image, Image.id == Label.image_id).where(Image.status == "ok")).all()
    expected: dict = {}
    for group, value, status, confidence in rows:
        entry = expected.setdefault(group, {"options": {}, "statuses": {}, "total": 0,
                                            "histogram": [0] * review.HISTOGRAM_BINS})
        key = value if value is not None else "(none)"
        entry["options"][key] = entry["options"].get(key, 0) + 1
        entry["statuses"][status] = entry["statuses"].get(status, 0) + 1
        entry["total"] += 1
        if confidence is not None:  # bin k: k/BINS <= confidence < (k+1)/BINS, the last closed
            edges = [k / review.HISTOGRAM_BINS for k in range(1, review.HISTOGRAM_BINS)]
            entry["histogram"][sum(confidence >= edge for edge in edges)] += 1
    assert sorted(stats) == sorted(expected)
    for group, entry in expected.items():
        got = stats[group]
        assert got["total"] == entry["total"] and got["options"] == entry["options"]
        assert {k: v for k, v in got["statuses"].items() if v} == entry["statuses"]
        assert got["histogram"] == entry["histogram"], group
    assert stats["concept"]["statuses"]["corrected"] == 1 and sum(stats["color"]["histogram"]) == \
        stats["color"]["total"] - 1


def test_a_race_inside_a_bulk_accept_only_drops_the_raced_label(web_config):
    rita, rob = _user_id(web_config, Users.reviewer), _user_id(web_config, Users.second)
    with db.session_scope(web_config) as s:
        labels = list(s.scalars(select(Label).where(Label.group == "size").order_by(Label.id).limit(3)))
    factory = db.session_factory(web_config)
    slow = factory()
    try:
        slow.get(Label, labels[2].id)  # read before rob's decision: the in-memory version is stale
        _decide(web_config, labels[2].id, "reject", rob, labels[2].version)
        result = review.accept_many(slow, [(l.id, l.version) for l in labels], rita)
        slow.commit()
    finally:
        slow.close()
    assert result.accepted == [labels[0].id, labels[1].id]
    assert [c["id"] for c in result.conflicts] == [labels[2].id]
    with db.session_scope(web_config) as s:
        assert [s.get(Label, l.id).status for l in labels] == ["accepted", "accepted", "rejected"]


def test_a_crash_before_commit_keeps_neither_event_nor_state(web_config):
    rita = _user_id(web_config, Users.reviewer)
    label = _first_label(web_config)
    with pytest.raises(KeyboardInterrupt):
        with db.session_scope(web_config) as s:
            review.decide(s, label.id, "accept", rita, label.version)
            raise KeyboardInterrupt  # the server dies mid-request, after the writes, before the commit
    with db.session_scope(web_config) as s:
        again = s.get(Label, label.id)
        assert (again.status, again.version) == ("proposed", label.version)
    assert _events(web_config, label.id) == []


def test_accept_above_leaves_labels_of_missing_images_alone(web_config):
    from labeler.store.catalog import Image

    with db.session_scope(web_config) as s:
        labels = list(s.scalars(select(Label).where(Label.group == "concept", Label.status == "proposed",
                                                    Label.value.is_not(None))))
        gone = labels[0].image_id
        s.get(Image, gone).status = "missing"
        expected = sum(1 for lb in labels if lb.image_id != gone)
    with db.session_scope(web_config) as s:
        assert review.preview_accept_above(s, "concept", 0.0) == expected
        assert review.accept_above(s, "concept", 0.0, _user_id(web_config, Users.reviewer)) == expected
    with db.session_scope(web_config) as s:
        assert s.scalar(select(Label.status).where(Label.image_id == gone, Label.group == "concept")) == "proposed"
