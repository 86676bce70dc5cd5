"""Labels that cost what they change: compact stored scores (migration 0004), bulk writes of
only the proposals that changed, and reruns that skip groups whose inputs did not change.

Real catalogs made by the Alembic migrations, the bundled labeler-tiny model and real images.
"""

from __future__ import annotations

import calendar
import json
import os
import threading
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy import delete, func, select

from labeler.labeling import bulk, queue_order
from labeler.store import db, queue_indexes, sqlite_writer
from labeler.review import present, decisions as review
from labeler.core import stored_scores
from labeler.store.catalog import Image, Label, ReviewEvent, utcnow
from labeler.errors import CatalogError
from labeler.labeling.bulk import (DEFAULT_STRATEGY, LabelReport, LabelWriter, Proposal, Proposer, encode_groups,
                                   label_collection, logit_scale, record_prompt_set)
from labeler.core.prompts import load_prompt_set
from labeler.core.scoring import softmax_confidence
from labeler.collection import in_session
from tests.cli import Cli


def rows(collection) -> dict[int, tuple]:
    """Every label as stored, by id: what a write would change."""
    with collection.session() as s:
        return {r[0]: tuple(r) for r in s.execute(select(
            Label.id, Label.image_id, Label.group, Label.value, Label.status, Label.confidence, Label.margin,
            Label.strategy, Label.prompt_set_id, Label.priority, Label.option_scores, Label.version,
            Label.updated_at))}


def decoded_scores(collection) -> dict[int, dict]:
    with collection.session() as s:
        return {label.id: stored_scores.label_scores(label) for label in s.scalars(select(Label))}


def test_stored_scores_round_trip_within_the_quantisation_step():
    rng = np.random.default_rng(0)
    cosines = rng.uniform(-1, 1, (50, 7))
    confidence = softmax_confidence(cosines, 100.0)
    blobs = stored_scores.encode(cosines, confidence)
    assert {len(b) for b in blobs} == {4 * 7}
    names = [f"o{i}" for i in range(7)]
    for blob, cos_row, conf_row in zip(blobs, cosines, confidence):
        back = stored_scores.decode(blob, names)
        assert list(back) == names
        np.testing.assert_allclose([back[n]["cosine"] for n in names], cos_row, atol=2e-5)
        np.testing.assert_allclose([back[n]["confidence"] for n in names], conf_row, atol=2e-5)
    assert stored_scores.decode(blobs[0], names[:-1]) == {}  # a blob of another option list shows nothing


def test_scores_shown_are_the_recomputed_cosines_and_confidences(indexed_collection):
    prompt_set = load_prompt_set("workshop")
    label_collection(indexed_collection, prompt_set)
    encoded = encode_groups(indexed_collection, prompt_set)
    scale = logit_scale(indexed_collection)
    ids, vecs = in_session(indexed_collection.vectors.read)
    with indexed_collection.session() as s:
        labels = list(s.scalars(select(Label).where(Label.image_id.in_(ids[:5].tolist()))))
        shown = {(l.image_id, l.group): present.label_dict(l) for l in labels}
    for (image_id, group), shown_label in shown.items():
        cosines, confidence, decision = encoded[group].decide("mean-embedding", vecs[ids == image_id], scale)
        assert shown_label["options"] == encoded[group].option_names
        for o, option in enumerate(encoded[group].option_names):
            assert shown_label["scores"][option]["cosine"] == pytest.approx(float(cosines[0, o]), abs=1e-4)
            assert shown_label["scores"][option]["confidence"] == pytest.approx(float(confidence[0, o]), abs=1e-4)
        top = max(shown_label["scores"], key=lambda o: shown_label["scores"][o]["confidence"])
        assert shown_label["predicted"] in (top, None)
        if shown_label["predicted"] is not None:
            assert shown_label["value_confidence"] == pytest.approx(shown_label["confidence"])


def test_migration_0004_converts_labels_down_and_up_and_keeps_reviews(indexed_collection):
    label_collection(indexed_collection, load_prompt_set("workshop"))
    with indexed_collection.session() as s:
        label = s.scalars(select(Label).where(Label.group == "concept").order_by(Label.id)).first()
        other = next(o for o in stored_scores.label_scores(label) if o != label.predicted)
        review.decide(s, label.id, "correct", None, label.version, other)
        events = s.scalar(select(func.count()).select_from(ReviewEvent))
    before, scores = rows(indexed_collection), decoded_scores(indexed_collection)
    config = indexed_collection.config
    command.downgrade(db.alembic_config(config), "0003")
    with db.get_engine(config).connect() as conn:
        stored = {i: json.loads(raw) if isinstance(raw, str) else raw
                  for i, raw in conn.execute(sa.text("SELECT id, scores FROM labels"))}
        assert conn.execute(sa.text("SELECT count(*) FROM review_events")).scalar() == events
    assert stored.keys() == scores.keys()
    for label_id, json_scores in stored.items():
        assert list(json_scores) == list(scores[label_id])
        for option, score in json_scores.items():
            assert score["cosine"] == pytest.approx(scores[label_id][option]["cosine"], abs=1e-4)
            assert score["confidence"] == pytest.approx(scores[label_id][option]["confidence"], abs=1e-4)
    db.upgrade(config)
    after = rows(indexed_collection)
    assert {i: r[:10] for i, r in after.items()} == {i: r[:10] for i, r in before.items()}
    again = decoded_scores(indexed_collection)
    for label_id, label_scores in again.items():
        assert list(label_scores) == list(scores[label_id])
        for option, score in label_scores.items():
            assert score["cosine"] == pytest.approx(scores[label_id][option]["cosine"], abs=1e-4)
            assert score["confidence"] == pytest.approx(scores[label_id][option]["confidence"], abs=1e-4)
    with indexed_collection.session() as s:
        assert s.scalar(select(func.count()).select_from(ReviewEvent)) == events


@pytest.mark.parametrize("recheck", [False, True])
def test_a_rerun_with_nothing_changed_writes_nothing(indexed_collection, recheck):
    prompt_set = load_prompt_set("workshop")
    first = label_collection(indexed_collection, prompt_set)
    before = rows(indexed_collection)
    again = label_collection(indexed_collection, prompt_set, recheck=recheck)
    assert rows(indexed_collection) == before  # no version bump, no updated_at touched
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, first.labeled)
    assert again.to_dict()["groups"] == first.to_dict()["groups"]


def test_only_changed_proposals_are_written(indexed_collection):
    """Stale stored proposals (as a crash or another version could leave) are exactly what a rerun rewrites."""
    prompt_set = load_prompt_set("workshop")
    label_collection(indexed_collection, prompt_set)
    with indexed_collection.session() as s:
        stale = list(s.scalars(select(Label.id).where(Label.group == "color").order_by(Label.id).limit(4)))
        s.execute(sa.update(Label).where(Label.id.in_(stale[:2])).values(confidence=Label.confidence - 0.01))
        s.execute(sa.update(Label).where(Label.id.in_(stale[2:])).values(value="not an option"))
    before = rows(indexed_collection)
    report = label_collection(indexed_collection, prompt_set, recheck=True)
    after = rows(indexed_collection)
    assert report.updated == 4 and report.inserted == 0
    assert {i for i in after if after[i] != before[i]} == set(stale)
    assert all(after[i][11] == before[i][11] + 1 for i in stale)


def test_a_changed_prompt_relabels_its_group_and_nothing_else(indexed_collection, tmp_path):
    source = load_prompt_set("workshop").source
    label_collection(indexed_collection, load_prompt_set("workshop"))
    before = rows(indexed_collection)
    edited = tmp_path / "workshop.yaml"
    edited.write_text(source.replace('"a tool for driving nails"', '"a heavy tool for driving nails"'))
    changed = load_prompt_set(edited)
    report = label_collection(indexed_collection, changed, groups=["concept"])
    after = rows(indexed_collection)
    concept = {i for i, r in before.items() if r[2] == "concept"}
    assert {i for i in after if after[i] != before[i]} == concept
    assert report.updated == len(concept) and report.unchanged == 0
    # what is stored is what the new prompts give
    encoded = encode_groups(indexed_collection, changed, ["concept"])["concept"]
    ids, vecs = in_session(indexed_collection.vectors.read)
    cosines, confidence, decision = encoded.decide("mean-embedding", vecs, logit_scale(indexed_collection))
    by_image = {after[i][1]: after[i] for i in concept}
    for k, image_id in enumerate(ids.tolist()):
        assert by_image[image_id][3] == encoded.answer(int(decision.choice[k]))
        assert by_image[image_id][5] == pytest.approx(float(decision.confidence[k]), abs=1e-6)


def test_reviews_and_new_images_make_a_group_relabel_and_reviewed_labels_stay(indexed_collection):
    prompt_set = load_prompt_set("workshop")
    label_collection(indexed_collection, prompt_set)
    with indexed_collection.session() as s:
        labels = list(s.scalars(select(Label).where(Label.group == "size").order_by(Label.id).limit(2)))
        review.decide(s, labels[0].id, "reject", None, labels[0].version)
        review.decide(s, labels[1].id, "accept", None, labels[1].version)
        reviewed = {labels[0].id, labels[1].id}
    before = rows(indexed_collection)
    report = label_collection(indexed_collection, prompt_set, strategy="max-score", groups=["size"])
    after = rows(indexed_collection)
    assert report.kept_reviewed == 2 and report.updated == report.labeled
    assert all(after[i] == before[i] for i in reviewed)
    assert {after[i][7] for i in after if after[i][2] == "size" and i not in reviewed} == {"max-score"}

    # An image that goes missing is not labeled; the group relabels (its stamp named the old set).
    with indexed_collection.session() as s:
        gone = s.scalar(select(Image.id).order_by(Image.id.desc()).limit(1))
        s.execute(sa.update(Image).where(Image.id == gone).values(status="missing"))
    again = label_collection(indexed_collection, prompt_set, strategy="max-score", groups=["size"])
    assert again.images == report.images - 1 and again.updated == 0
    assert again.unchanged == again.labeled == report.labeled - 1


def test_labels_deleted_behind_labelings_back_are_proposed_again(indexed_collection):
    prompt_set = load_prompt_set("workshop")
    label_collection(indexed_collection, prompt_set)
    before = rows(indexed_collection)
    with indexed_collection.session() as s:
        gone = list(s.scalars(select(Label.id).where(Label.group == "material").order_by(Label.id).limit(3)))
        s.execute(sa.delete(Label).where(Label.id.in_(gone)))
    report = label_collection(indexed_collection, prompt_set)
    assert (report.inserted, report.updated) == (3, 0)
    after = {r[1:3]: r[3:11] for r in rows(indexed_collection).values()}
    assert after == {r[1:3]: r[3:11] for r in before.values()}


def test_queries_for_reviewed_labels_seek_the_index_that_holds_only_them(indexed_collection):
    """Every reader of reviewed labels seeks them by (group, status) instead of walking the group.
    Migration 0007 keeps only reviewed labels in a partial (group, status) index, which SQLite uses
    only when the query repeats its condition, so each reader does."""
    from labeler.labeling import evaluate, learning
    from labeler.labeling.bulk import embedded_images, proposers, record_prompt_set, run_stamp

    prompt_set = load_prompt_set("workshop")
    label_collection(indexed_collection, prompt_set)
    with indexed_collection.session() as s:
        labels = list(s.scalars(select(Label).where(Label.group == "concept").order_by(Label.id).limit(2)))
        review.decide(s, labels[0].id, "accept", None, labels[0].version)
        review.decide(s, labels[1].id, "reject", None, labels[1].version)
    engine = db.get_engine(indexed_collection.config)
    seen: list[tuple[str, tuple]] = []

    def capture(conn, cursor, statement, parameters, context, executemany):
        if "FROM labels" in statement and "status" in statement:
            seen.append((statement, parameters))

    sa.event.listen(engine, "before_cursor_execute", capture)
    try:
        with indexed_collection.session() as s:
            learning.reviews(s, "concept", prompt_set.groups["concept"].option_names)
            model_id = in_session(indexed_collection.models.require_id)
            prompt_set_id = record_prompt_set(s, prompt_set)
            how = proposers(s, model_id, prompt_set_id, ["concept"], None)
            run_stamp(s, model_id, 100.0, prompt_set_id, how["concept"], "concept", embedded_images(s, model_id))
        evaluate.truth_from_reviews(indexed_collection, ["concept"])
    finally:
        sa.event.remove(engine, "before_cursor_execute", capture)
    assert len(seen) == 3
    with engine.connect() as conn:
        raw = conn.connection.driver_connection
        for statement, parameters in seen:
            plan = " ".join(row[3] for row in raw.execute("EXPLAIN QUERY PLAN " + statement, parameters))
            # a seek on (group, status): the partial index of reviewed labels, or one of the queue's
            # (group, status, ...) indexes of migration 0013, which SQLite may find as cheap
            assert "(group=? AND status=?)" in plan, (statement, plan)
        kept = raw.execute("SELECT count(*) FROM labels INDEXED BY ix_labels_group_reviewed "
                           "WHERE status <> 'proposed'").fetchone()[0]
    assert kept == 2


def test_a_chunks_stamp_is_stored_as_seconds_and_reads_back_as_a_datetime(indexed_collection):
    before = utcnow().replace(microsecond=0)
    label_collection(indexed_collection, load_prompt_set("workshop"))
    after = utcnow()
    with indexed_collection.session() as s:
        stored = set(s.execute(sa.text("SELECT updated_at, typeof(updated_at) FROM labels")).all())
        read = set(s.scalars(select(Label.updated_at)))
    assert {kind for _, kind in stored} == {"integer"}  # 4 bytes, not 19 of text
    assert {calendar.timegm(d.timetuple()) for d in read} == {t for t, _ in stored}
    assert all(before <= d <= after and d.microsecond == 0 for d in read)


def test_a_review_stamps_its_label_in_seconds_too(indexed_collection):
    label_collection(indexed_collection, load_prompt_set("workshop"))
    with indexed_collection.session() as s:
        label = s.scalars(select(Label).where(Label.group == "concept").limit(1)).one()
        review.decide(s, label.id, "accept", None, label.version)
    with indexed_collection.session() as s:
        kind, = s.execute(sa.text("SELECT typeof(updated_at) FROM labels WHERE id = :id"), {"id": label.id}).one()
        newest = s.scalar(select(Label.updated_at).order_by(Label.updated_at.desc(), Label.id.desc()).limit(1))
        assert kind == "integer"
        assert s.get(Label, label.id).updated_at == newest


def test_labeling_gives_back_the_cycle_collector_even_when_it_fails(indexed_collection):
    import gc

    assert gc.isenabled()

    def stop(_done: int) -> None:
        assert not gc.isenabled()  # off while chunks are scored and written
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        label_collection(indexed_collection, load_prompt_set("workshop"), progress=stop)
    assert gc.isenabled()
    label_collection(indexed_collection, load_prompt_set("workshop"))
    assert gc.isenabled()
    # A run on another thread (a web job in the server) leaves the collector to the process.
    seen = []

    def watch(_done: int) -> None:
        seen.append(gc.isenabled())

    worker = threading.Thread(target=label_collection, args=(indexed_collection, load_prompt_set("workshop")),
                              kwargs={"strategy": "max-score", "progress": watch})
    worker.start()
    worker.join()
    assert seen and all(seen)


def test_migration_0008_turns_stamps_into_seconds_and_back(indexed_collection):
    label_collection(indexed_collection, load_prompt_set("workshop"))
    config = indexed_collection.config

    def stamps() -> tuple[dict, set]:
        with db.get_engine(config).connect() as conn:
            kinds = set(conn.execute(sa.text("SELECT typeof(updated_at) FROM labels")).scalars())
        with indexed_collection.session() as s:
            return dict(s.execute(select(Label.id, Label.updated_at)).all()), kinds

    read, kinds = stamps()
    assert kinds == {"integer"}
    command.downgrade(db.alembic_config(config), "0007")
    with db.get_engine(config).connect() as conn:
        text_form = dict(conn.execute(sa.text("SELECT id, updated_at FROM labels")).all())
    assert text_form == {i: d.isoformat(sep=" ") for i, d in read.items()}  # what DateTime writes
    db.upgrade(config)
    assert stamps() == (read, {"integer"})


def test_a_chunk_whose_image_went_while_it_was_planned_is_not_written(indexed_collection):
    """SQLite's foreign keys are off for the bulk upsert; the writer checks each parent instead,
    in the same write transaction, and refuses the whole chunk as the constraint would have."""
    prompt_set = load_prompt_set("workshop")
    encoded = encode_groups(indexed_collection, prompt_set, ["concept"])
    ids, vecs = in_session(indexed_collection.vectors.read)
    how = Proposer(DEFAULT_STRATEGY)
    cosines, confidence, decision = how.decide(encoded["concept"], vecs, logit_scale(indexed_collection))
    proposals = {"concept": Proposal.of(encoded["concept"], how, ids, cosines, confidence, decision, {})}
    with indexed_collection.session() as s:
        writer = LabelWriter(s.get_bind().dialect)
        batch = writer.plan(s, ids, proposals, record_prompt_set(s, prompt_set),
                            LabelReport(groups={"concept": Counter()}))
        s.execute(sa.delete(Image).where(Image.id == int(ids[3])))
    assert len(batch.rows) == len(ids)
    with pytest.raises(CatalogError, match=r"\(1 of images\).*run label again"):
        writer.execute(indexed_collection, batch)
    engine = db.get_engine(indexed_collection.config)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM labels")).scalar() == 0
    pooled = [engine.raw_connection() for _ in range(3)]  # the writer's connection is among them
    try:
        assert [c.driver_connection.execute("PRAGMA foreign_keys").fetchone()[0] for c in pooled] == [1, 1, 1]
    finally:
        for c in pooled:
            c.close()
    report = label_collection(indexed_collection, prompt_set, groups=["concept"])  # the rest, planned again
    assert report.inserted == len(ids) - 1


def _writer_children() -> list[int]:
    """Live processes of ``python -m labeler.store.sqlite_writer`` started by this one."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[1]) == os.getpid() and fields[0] != "Z" and b"labeler.store.sqlite_writer" in cmdline:
            found.append(int(stat.parent.name))
    return found


def test_an_interrupted_run_stops_its_writer_process_and_the_next_run_finishes(indexed_collection):
    prompt_set = load_prompt_set("workshop")

    def stop(_done: int) -> None:
        assert _writer_children()  # several chunks: a process writes them
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        label_collection(indexed_collection, prompt_set, chunk_rows=7, progress=stop)
    assert _writer_children() == []
    report = label_collection(indexed_collection, prompt_set, chunk_rows=7)
    assert report.labeled == report.inserted + report.unchanged > 0
    assert _writer_children() == []
    with indexed_collection.session() as s:
        assert s.scalar(select(func.count()).select_from(Label)) == report.labeled


def test_the_writer_process_refuses_a_batch_whose_image_went_and_skips_the_rest(indexed_collection):
    label_collection(indexed_collection, load_prompt_set("workshop"), groups=["concept"])
    config = indexed_collection.config
    with indexed_collection.session() as s:
        writer = LabelWriter(s.get_bind().dialect)
        first, second = s.scalars(select(Label).where(Label.group == "concept").order_by(Label.image_id).limit(2))
        rows = [tuple({"image_id": label.image_id, "group": "concept", "value": "saw", "predicted": "saw",
                       "confidence": 0.5, "margin": 0.1, "strategy": "single", "option_scores": None,
                       "prompt_set_id": label.prompt_set_id, "fit_id": None, "priority": None, "informative_rank": None,
                       "updated_at": 0}[key] for key in writer.keys) for label in (first, second)]
    with sqlite_writer.WriterProcess(db.sqlite_path(config), writer.sql) as process:
        process.submit(rows[:1], [("images", [first.image_id]), ("images", [10**9])])
        process.submit(rows[1:], [("images", [second.image_id])])
        with pytest.raises(CatalogError, match=r"\(1 of images\)"):
            process.result()
        assert process.result() == 0  # skipped, not written
    with indexed_collection.session() as s:
        assert {l.value for l in s.scalars(select(Label).where(Label.id.in_([first.id, second.id])))} \
            == {first.value, second.value}
    assert _writer_children() == []


def test_a_writer_process_that_dies_is_one_clear_error(indexed_collection):
    with indexed_collection.session() as s:
        writer = LabelWriter(s.get_bind().dialect)
    with pytest.raises(CatalogError, match="writer process stopped"):
        with sqlite_writer.WriterProcess(db.sqlite_path(indexed_collection.config), writer.sql) as process:
            process._process.kill()
            process._process.wait()
            process.submit([], [])
            process.result()
    assert _writer_children() == []


def test_labeling_under_a_wsgi_host_whose_executable_is_not_python(indexed_collection, tmp_path, monkeypatch):
    import sys

    host = tmp_path / "uwsgi"  # uWSGI embeds Python: its sys.executable is the uwsgi binary
    host.write_text("#!/bin/sh\nexit 1\n")
    host.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(host))
    assert Path(sqlite_writer.python_interpreter()).name.startswith("python")
    # chunks of 8 rows: more than one, so a writer process of its own writes them
    report = label_collection(indexed_collection, load_prompt_set("workshop"), chunk_rows=8)
    with indexed_collection.session() as s:
        assert s.scalar(select(func.count()).select_from(Label)) == report.labeled > 0

    for attribute in ("prefix", "exec_prefix", "base_prefix"):  # and no Python beside it: one clear error
        monkeypatch.setattr(sys, attribute, str(tmp_path))
    with pytest.raises(CatalogError, match="cannot start the catalog's writer process"):
        sqlite_writer.python_interpreter()


def _queue_pages(collection) -> dict[str, list[int]]:
    with collection.session() as s:
        return {sort: [label.id for label in review.queue_page(s, "concept", None, "proposed", sort, 12).labels]
                for sort in ("uncertainty", "informative", "confidence", "confidence_asc", "id")}


def _queue_images(collection) -> dict[str, list[int]]:
    """The image ids of each sort's first page of proposed ``concept`` labels."""
    with collection.session() as s:
        return {sort: [label.image_id for label in review.queue_page(s, "concept", None, "proposed", sort, 12).labels]
                for sort in ("uncertainty", "informative", "confidence", "confidence_asc", "id")}


def test_a_run_that_writes_most_labels_sets_the_queue_indexes_aside_and_builds_them_again(indexed_collection,
                                                                                          monkeypatch):
    """Past BULK_ROWS (500,000 in use; here 1, the collection is small) a run that writes most of
    what it proposes drops the queue indexes and builds them once at the end; the queue reads the
    same pages either way, and a run that stopped half way leaves them for the next run to build."""
    prompt_set = load_prompt_set("workshop")
    small = label_collection(indexed_collection, prompt_set, groups=["concept"])
    assert small.rebuilt_indexes == []  # under BULK_ROWS: updated in place
    with indexed_collection.session() as s:
        assert queue_indexes.missing(s) == []
    monkeypatch.setattr(queue_indexes, "BULK_ROWS", 1)
    pages = _queue_pages(indexed_collection)
    bulk = label_collection(indexed_collection, prompt_set, groups=["color", "material"])
    assert bulk.inserted > 0 and bulk.rebuilt_indexes == [ix.name for ix in queue_indexes.QUEUE_INDEXES]
    with indexed_collection.session() as s:
        assert queue_indexes.missing(s) == []
    assert _queue_pages(indexed_collection) == pages

    # one group's relabel that changes every proposal, in a catalog of three: each index is updated
    # in place, since a rebuild would write the two other groups' entries again
    strategy = "single" if small.methods["concept"]["strategy"] != "single" else "mean-embedding"
    one = label_collection(indexed_collection, prompt_set, groups=["concept"], strategy=strategy)
    assert one.updated >= one.labeled / 2 and one.rebuilt_indexes == []
    pages = _queue_pages(indexed_collection)

    def stop(_done: int) -> None:
        raise KeyboardInterrupt

    four = ["handle", "size", "context", "orientation"]  # most of what the indexes will hold
    with pytest.raises(KeyboardInterrupt):  # after its first chunk: the indexes are away
        label_collection(indexed_collection, prompt_set, groups=four, chunk_rows=7, progress=stop)
    with indexed_collection.session() as s:
        assert len(queue_indexes.missing(s)) == len(queue_indexes.QUEUE_INDEXES)
    assert _queue_pages(indexed_collection) == pages  # slower without them, never different
    cli = Cli(indexed_collection.config.home, indexed_collection.config.model)
    checked = cli.json("check", expect=1)
    assert any("ix_labels_queue_id" in p and "check --repair" in p for p in checked["problems"])
    rerun = label_collection(indexed_collection, prompt_set, groups=["handle"])  # builds what a run left away
    assert rerun.rebuilt_indexes and rerun.to_dict()["rebuilt_indexes"] == rerun.rebuilt_indexes
    with indexed_collection.session() as s:
        assert queue_indexes.missing(s) == []
        queue_indexes.set_aside(s)
    assert cli.json("check", "--repair")["ok"] is True
    with indexed_collection.session() as s:
        assert queue_indexes.missing(s) == []


def test_a_rerun_that_changes_little_keeps_the_queue_indexes(indexed_collection, monkeypatch):
    prompt_set = load_prompt_set("workshop")
    label_collection(indexed_collection, prompt_set, groups=["concept"])
    monkeypatch.setattr(queue_indexes, "BULK_ROWS", 1)
    again = label_collection(indexed_collection, prompt_set, groups=["concept"], recheck=True)
    assert again.inserted == again.updated == 0 and again.rebuilt_indexes == []


def test_a_first_run_inserts_its_rows_with_their_rank_and_leaves_the_rank_pass_nothing(indexed_collection,
                                                                                        monkeypatch):
    """A group's first run scores every chunk once without writing, so its rows go in with their
    "most informative" rank and the pass after the writes, which checks every rank, moves none; the
    queue reads the same order as when that pass wrote the ranks (the dialect taken out of
    RANK_AHEAD_DIALECTS), and a group that has labels is ranked after its writes, as before."""
    prompt_set = load_prompt_set("workshop")
    monkeypatch.setattr(bulk, "RANK_AHEAD_DIALECTS", ())
    after = label_collection(indexed_collection, prompt_set, groups=["concept"], chunk_rows=7)
    assert after.ranked_ahead == [] and after.ranks_moved == after.inserted > 0
    pages = _queue_images(indexed_collection)
    with indexed_collection.session() as s:
        written_after = sorted(s.scalars(select(Label.informative_rank).where(Label.group == "concept")))
        s.execute(delete(Label).where(Label.group == "concept"))
    monkeypatch.undo()
    ahead = label_collection(indexed_collection, prompt_set, groups=["concept", "color"], chunk_rows=7)
    assert ahead.ranked_ahead == ["color", "concept"] and ahead.ranks_moved == 0
    with indexed_collection.session() as s:
        ranks = sorted(s.scalars(select(Label.informative_rank).where(Label.group == "concept")))
    assert ranks == written_after == list(range(after.inserted))
    assert _queue_images(indexed_collection) == pages
    again = label_collection(indexed_collection, prompt_set, groups=["concept"], strategy="single")
    assert again.ranked_ahead == [] and again.updated > 0


def test_a_group_whose_rows_are_not_the_ones_ranked_ahead_is_ranked_again_after_the_writes(indexed_collection,
                                                                                             monkeypatch):
    """An image embedded between the scoring pass and the writes is inserted without a rank (here
    rank_ahead forgets one image, as if it came later): the test after the writes sees it, and the
    rank pass orders the group as if there had been no pass ahead; a group ranked as planned is
    left alone."""
    prompt_set = load_prompt_set("workshop")
    monkeypatch.setattr(bulk, "RANK_AHEAD_DIALECTS", ())
    label_collection(indexed_collection, prompt_set, groups=["concept"], chunk_rows=7)
    pages = _queue_images(indexed_collection)
    with indexed_collection.session() as s:
        s.execute(delete(Label).where(Label.group == "concept"))
    monkeypatch.undo()
    planned = bulk.rank_ahead

    def one_image_late(collection, run, chunk_rows, progress=None):
        ranked = planned(collection, run, chunk_rows, progress)
        ids, rank = ranked["concept"]
        keep = rank != rank.max()  # the last in the order: the others keep their ranks
        return {**ranked, "concept": (ids[keep], rank[keep])}

    monkeypatch.setattr(bulk, "rank_ahead", one_image_late)
    late = label_collection(indexed_collection, prompt_set, groups=["concept", "color"], chunk_rows=7)
    assert late.ranked_ahead == ["color", "concept"] and late.ranks_moved == 1  # the late image's, color's none
    with indexed_collection.session() as s:
        assert queue_order.stored_as_planned(s, "concept", late.inserted // 2)
        assert not queue_order.stored_as_planned(s, "concept", late.inserted // 2 - 1)
    assert _queue_images(indexed_collection) == pages


def test_a_first_run_counts_each_pass_over_the_images_as_a_stage_of_its_own(indexed_collection):
    """The scoring pass ahead, the labeling pass and the finishing step (queue order and indexes)
    each start a stage: the bar counts the images of each pass from 0, and the last step is not
    left behind a bar at 100%. A relabel has no pass ahead; a run with nothing to do, no stage."""
    prompt_set = load_prompt_set("workshop")
    stages: list[tuple[str, int | None]] = []
    counts: list[int] = [0]

    def stage(name: str, total: int | None) -> None:
        stages.append((name, total))
        counts.append(0)

    def progress(n: int) -> None:
        counts[-1] += n

    with indexed_collection.session() as s:
        images = s.scalar(select(func.count()).select_from(Image))
    label_collection(indexed_collection, prompt_set, groups=["concept"], chunk_rows=7, progress=progress, stage=stage)
    assert stages == [("scoring ahead", images), ("labeling", images), ("queue order and indexes", None)]
    assert counts == [0, images, images, 0]
    stages.clear()
    counts[:] = [0]
    label_collection(indexed_collection, prompt_set, groups=["concept"], strategy="single", chunk_rows=7,
                     progress=progress, stage=stage)
    assert stages == [("labeling", images), ("queue order and indexes", None)] and counts == [0, images, 0]
    stages.clear()
    counts[:] = [0]
    label_collection(indexed_collection, prompt_set, groups=["concept"], strategy="single", progress=progress,
                     stage=stage)
    assert stages == [] and counts == [images]


def test_the_bar_of_each_stage_is_a_line_of_its_own_on_a_terminal(monkeypatch):
    import os
    import sys

    from labeler.commands.context import Progress

    parent, child = os.openpty()
    with os.fdopen(child, "w") as terminal:
        monkeypatch.setattr(sys, "stderr", terminal)
        assert Progress(None, None, quiet=False)._bar is None  # no step named yet: nothing drawn
        with Progress("scoring ahead", 4, quiet=False) as bar:
            bar.update(4)
            bar.stage("labeling", 4)
            bar.update(2)
            bar.stage("queue order and indexes", None)
        terminal.flush()
    monkeypatch.undo()
    shown = os.read(parent, 65536).decode()
    os.close(parent)
    assert shown.index("scoring ahead") < shown.index("labeling") < shown.index("queue order and indexes")
    with Progress("labeling", 4, quiet=True) as quiet:  # --json: no bar at all
        quiet.stage("queue order and indexes", None)
        assert quiet._bar is None
