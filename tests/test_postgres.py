"""The same code on PostgreSQL: migrations, ingest, embed, label, search and check."""

from __future__ import annotations

import pytest
from alembic import command
from sqlalchemy import func, select

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
