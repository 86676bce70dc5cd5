"""The same code on PostgreSQL: migrations, ingest, embed, label, search and check."""

from __future__ import annotations

import pytest
from alembic import command
from sqlalchemy import func, select, text

from labeler.store import db
from labeler.review import present, decisions as review
from labeler.store.catalog import Label
from labeler.collection import Collection
from labeler.config import Config
from labeler.labeling.bulk import label_collection
from labeler.labeling.learning import learn
from labeler.ingest.run import index_paths
from labeler.core.prompts import load_prompt_set
from labeler.search import search
from labeler.store.stats import label_groups, label_values
from tests import postgres
from tests.imagegen import write_broken_corpus, write_good_images


def label_rows(collection: Collection) -> list[tuple]:
    with collection.session() as s:
        return [tuple(r) for r in s.execute(select(Label.id, Label.value, Label.confidence, Label.option_scores,
                                                   Label.version, Label.updated_at).order_by(Label.id))]


def shown_scores(collection: Collection) -> dict:
    """The scores the detail page and the API show for the first concept label."""
    with collection.session() as s:
        label = s.scalars(select(Label).where(Label.group == "concept").order_by(Label.id)).first()
        return present.label_dict(label)["scores"]


def own_database(postgres_url: str, name: str) -> str:
    """A fresh database ``name`` on the test server, apart from the other tests'; its URL."""
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    url = make_url(postgres_url)
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    admin.dispose()
    return url.set(database=name).render_as_string(hide_password=False)


@pytest.fixture(scope="module")
def postgres_url():
    reason = postgres.available()
    if reason:
        pytest.skip(reason)
    with postgres.postgres_server() as url:
        yield url


@pytest.mark.slow
def test_catalog_runs_on_postgresql(postgres_url, tmp_path, model_spec):
    config = Config(home=tmp_path / "home", database_url=postgres_url, model=model_spec)
    collection = Collection(config)
    photos = tmp_path / "photos"
    write_good_images(photos, 10)
    broken = write_broken_corpus(photos / "broken")

    report = index_paths(collection, [photos])
    assert (report.added, report.embedded, report.failed) == (10, 10, len(broken))
    again = index_paths(Collection(config), [photos])
    assert (again.unchanged, again.embedded) == (10, 0)

    labels = label_collection(collection, load_prompt_set("workshop"))
    assert labels.labeled == 10 * len(load_prompt_set("workshop").groups)
    # a first run inserts its rows with their rank: the rank's UPDATE after them, which would write
    # a new version of every row here, finds none to move
    assert labels.ranked_ahead == sorted(load_prompt_set("workshop").groups) and labels.ranks_moved == 0
    # The bulk upsert and the change-only rerun on PostgreSQL: nothing changed, nothing written.
    before = label_rows(collection)
    for recheck in (False, True):
        again = label_collection(collection, load_prompt_set("workshop"), recheck=recheck)
        assert (again.inserted, again.updated, again.unchanged) == (0, 0, labels.labeled)
    assert label_rows(collection) == before
    scores = shown_scores(collection)
    assert list(scores) == load_prompt_set("workshop").groups["concept"].option_names
    hits = search(collection, "a red hammer", k=3)
    assert len(hits) == 3 and hits[0].score >= hits[-1].score
    with collection.session() as s:  # the loose index scans of groups and values
        held = s.scalars(select(Label.value).where(Label.group == "palette", Label.value.is_not(None)).distinct())
        assert label_values(s, "palette") == sorted(held) and label_values(s, "nope") == []
        assert label_groups(s) == sorted(load_prompt_set("workshop").groups)
    # Learning from reviews on PostgreSQL: reviews, a stored fit, labels that record it, the window-function sort.
    with collection.session() as s:
        for label in s.scalars(select(Label).where(Label.group == "palette").order_by(Label.id).limit(6)):
            review.decide(s, label.id, "correct", None, label.version, ("warm", "cool", "neutral")[label.id % 3])
    learned = learn(collection, ["palette"])
    assert learned["palette"]["reviewed"] == 6 and learned["palette"]["fit_id"]
    relabeled = label_collection(collection, load_prompt_set("workshop"), groups=["palette"])
    assert relabeled.methods["palette"]["fit_id"] == learned["palette"]["fit_id"]
    with collection.session() as s:
        ordered, total = review.list_labels(s, group="palette", status="proposed", sort="informative")
    assert total == 4 and len(ordered) == 4
    with collection.session() as s:  # the fit's relabel left the six corrections alone
        assert s.scalar(select(func.count()).select_from(Label).where(
            Label.group == "palette", Label.status == "corrected", Label.reviewed_by.is_(None))) == 6
    # Migration 0004 down (JSON scores) and up again on PostgreSQL.
    command.downgrade(db.alembic_config(config), "0003")
    db.upgrade(config)
    for option, score in shown_scores(collection).items():
        assert score["cosine"] == pytest.approx(scores[option]["cosine"], abs=1e-4)
        assert score["confidence"] == pytest.approx(scores[option]["confidence"], abs=1e-4)
    assert not (config.home / "catalog.db").exists()  # nothing went to SQLite


@pytest.mark.slow
def test_team_review_runs_on_postgresql(postgres_url, tmp_path, model_spec):
    """Versions that move only with what a reviewer sees, leases, assignments, flags and QA on PostgreSQL."""
    from datetime import timedelta

    from labeler.review import flags, leases, qa
    from labeler.store import users
    from labeler.store.catalog import QaTask, utcnow

    config = Config(home=tmp_path / "home", database_url=own_database(postgres_url, "team"), model=model_spec)
    collection = Collection(config)
    photos = tmp_path / "photos"
    write_good_images(photos, 8)
    index_paths(collection, [photos])
    label_collection(collection, load_prompt_set("workshop"))
    with collection.session() as s:
        versions = dict(s.execute(select(Label.id, Label.version)).all())
        rita = users.create_user(s, "rita", "a long enough password", "reviewer").id
        rob = users.create_user(s, "rob", "a long enough password", "reviewer").id
    # a rewrite that changes no value and no shown confidence keeps every version (round on numeric)
    with collection.session() as s:
        s.execute(Label.__table__.update().values(margin=Label.margin + 0.5, strategy="other"))
    label_collection(collection, load_prompt_set("workshop"), recheck=True)
    with collection.session() as s:
        assert dict(s.execute(select(Label.id, Label.version)).all()) == versions
        ids = sorted(versions)[:6]
        t0 = utcnow()
        assert leases.claim(s, rita, ids[:4], now=t0) == set(ids[:4])
        assert leases.claim(s, rob, ids, now=t0) == set(ids[4:])
        assert leases.claim(s, rob, ids, now=t0 + timedelta(seconds=leases.LEASE_SECONDS + 1)) == set(ids)
        page = review.queue_page(s, "concept", None, "proposed", "informative", 48, rita)
        assert not {label.id for label in page.labels} & set(ids)
        leases.assign(s, "size", None, ["rob"])
        assert review.queue_page(s, "size", None, "proposed", "id", 48, rita).labels == []
        flag = flags.add(s, "ambiguous", rita, label_id=ids[0], note="which one?")
        assert review.queue_page(s, None, None, None, "id", 48, None, flag="ambiguous").labels[0].id == flag.label_id
        qa.set_share(s, "color", 1.0)
        label = s.scalars(select(Label).where(Label.group == "color").order_by(Label.id)).first()
        review.decide(s, label.id, "accept", rita, label.version)
        task = s.scalars(select(QaTask)).one()
        assert qa.queue(s, rita) == [] and qa.queue(s, rob)[0].id == task.id
        assert qa.answer(s, task.id, rob, label.value).status == "agreed"
        assert {r["reviewer"]: r["kappa"] for r in qa.report(s)} == {"rita": 1.0}
        # the progress line: the group's kept total and its reviewed labels, exact
        line = review.progress(s, "color")
        assert (line["total"], line["reviewed"]) == (8, 1)
        s.execute(text("DELETE FROM labels WHERE id IN (SELECT id FROM labels WHERE \"group\" = 'palette' ORDER BY id DESC LIMIT 2)"))
        assert review.progress(s, "palette")["total"] == 6
    label_collection(collection, load_prompt_set("workshop"), groups=["palette"])  # adds the two back
    with collection.session() as s:
        assert review.progress(s, "palette")["total"] == 8
        # every queue sort, paged by keys through its indexes, is the queue's one order (skips last)
        concept = s.scalars(select(Label).where(Label.group == "concept", Label.status == "proposed")
                            .order_by(Label.id)).all()
        review.decide(s, concept[-1].id, "skip", rita, concept[-1].version)
        assert s.scalar(select(func.count()).where(Label.informative_rank.is_(None))) == 0
        for sort in review.SORTS:
            for status in (None, "proposed"):
                expected = [x.id for x in review.list_labels(s, "concept", None, status, sort, 500, 0, rita)[0]]
                walked, after = [], None
                while True:
                    page = review.queue_page(s, "concept", None, status, sort, 3, rita, after=after)
                    walked += [x.id for x in page.labels]
                    if not page.more_after:
                        break
                    after = page.last
                assert walked == expected and expected, (sort, status)


def analyzed(collection: Collection) -> set[str]:
    """The tables an ANALYZE (not autovacuum's) has given statistics."""
    with collection.session() as s:
        return set(s.scalars(text("SELECT relname FROM pg_stat_user_tables WHERE last_analyze IS NOT NULL")))


def foreign_keys(collection: Collection) -> dict[str, str]:
    """The labels table's foreign keys as PostgreSQL defines them, by name."""
    with collection.session() as s:
        return dict(s.execute(text("SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
                                   "WHERE conrelid = 'labels'::regclass AND contype = 'f'")).all())


@pytest.mark.slow
def test_a_bulk_label_run_sets_the_foreign_keys_aside_and_adds_them_back_as_they_were(postgres_url, tmp_path,
                                                                                     model_spec, monkeypatch):
    """A run that rewrites most labels drops the labels' foreign keys with the queue indexes (a
    trigger per row and key was most of PostgreSQL's upsert) and adds them back, same names and
    definitions, checked in one scan; a run that stopped with them away leaves them to the next run
    or check --repair, which first give orphaned labels what ON DELETE would have."""
    from sqlalchemy.exc import IntegrityError

    from labeler.labeling.bulk import Batch, LabelWriter
    from labeler.store import queue_indexes, users
    from labeler.store.catalog import utcnow
    from tests.cli import Cli

    config = Config(home=tmp_path / "home", database_url=own_database(postgres_url, "bulk"), model=model_spec)
    collection = Collection(config)
    photos = tmp_path / "photos"
    write_good_images(photos, 8)
    monkeypatch.setattr(db, "BULK_ANALYZE_ROWS", 1)  # 8 images count as a bulk load here
    index_paths(collection, [photos])
    assert analyzed(collection) == {"images", "image_files", "embeddings"}  # the planner knows them
    before = foreign_keys(collection)
    assert {d.split(" REFERENCES ")[1].split("(")[0] for d in before.values()} == {"images", "prompt_sets", "fits",
                                                                                    "users"}
    monkeypatch.setattr(queue_indexes, "BULK_ROWS", 1)  # a first run of 8 images counts as bulk here
    workshop = load_prompt_set("workshop")
    report = label_collection(collection, workshop, chunk_rows=3)  # chunks written by PG_WRITERS threads
    assert report.inserted == report.labeled == 8 * len(workshop.groups) and report.images == 8
    assert set(before) <= set(report.rebuilt_indexes)  # they were away, and are back
    again = label_collection(collection, workshop, recheck=True)  # one chunk, in turn: the same proposals
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, report.labeled)

    # A chunk planned as all new (COPYed straight into labels) whose labels someone inserted since:
    # the COPY rolls back to its savepoint and the rows take the upsert, which leaves a review alone.
    with collection.session() as s:
        reviewed, proposed = s.scalars(select(Label).where(Label.group == "concept").order_by(Label.id).limit(2))
        review.decide(s, reviewed.id, "correct", None, reviewed.version, "saw" if reviewed.value != "saw" else "mug")
        kept = s.get(Label, reviewed.id).value
        new = "book" if proposed.value != "book" else "mug"
        writer = LabelWriter(s.get_bind().dialect)
        given = {"group": "concept", "value": new, "predicted": new, "confidence": 0.5, "margin": 0.1,
                 "strategy": "single", "fit_id": None, "priority": None, "option_scores": None,
                 "prompt_set_id": proposed.prompt_set_id, "updated_at": utcnow(), "informative_rank": None}
        rows = [tuple({**given, "image_id": label.image_id}[k] for k in writer.keys) for label in (reviewed, proposed)]
        ids = (reviewed.id, proposed.id, proposed.prompt_set_id)
    assert writer.execute(collection, Batch(images=2, rows=rows, prompt_set_id=ids[2], fresh=True)) == 1
    with collection.session() as s:
        assert s.get(Label, ids[0]).value == kept  # the review kept
        assert s.get(Label, ids[1]).value == new  # the proposal rewritten by the upsert
    assert foreign_keys(collection) == before and "labels" in analyzed(collection)
    with collection.session() as s:
        assert queue_indexes.missing(s) == []
        image_id, label_id = s.execute(select(Label.image_id, Label.id).order_by(Label.id)).first()
    with pytest.raises(IntegrityError), collection.session() as s:  # enforced again
        s.execute(Label.__table__.update().where(Label.id == label_id).values(image_id=10 ** 9))

    # A run stopped with the keys away; meanwhile a reviewer was deleted and a label lost its image.
    with collection.session() as s:
        queue_indexes.set_aside(s)
    with collection.session() as s:
        assert set(before) <= set(queue_indexes.missing(s)) and foreign_keys(collection) == {}
        gone = users.create_user(s, "gone", "a long enough password", "reviewer").id
        s.execute(Label.__table__.update().where(Label.id == label_id + 1).values(reviewed_by=gone))
        s.execute(text("DELETE FROM users WHERE id = :id"), {"id": gone})
        s.execute(Label.__table__.update().where(Label.id == label_id).values(image_id=10 ** 9))
    monkeypatch.setenv("LABELER_DATABASE_URL", config.database_url)
    checked = Cli(config.home, model_spec).json("check", expect=1)
    assert any("foreign keys" in p and "check --repair" in p for p in checked["problems"]), checked
    with collection.session() as s:
        assert set(queue_indexes.restore(s)) >= set(before)
    assert foreign_keys(collection) == before
    with collection.session() as s:
        assert s.get(Label, label_id) is None  # its image was gone: removed, as CASCADE would have
        assert s.get(Label, label_id + 1).reviewed_by is None  # its reviewer was gone: SET NULL
        assert s.scalar(select(func.count()).select_from(Label).where(Label.image_id == image_id)) > 0
