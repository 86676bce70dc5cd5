"""The same code on PostgreSQL: migrations, ingest, embed, label, search and check."""

from __future__ import annotations

import pytest

from sqlalchemy import select

from labeler import review
from labeler.catalog import Label
from labeler.collection import Collection
from labeler.config import Config
from labeler.labeling import label_collection
from labeler.learning import learn
from labeler.pipeline import index_paths
from labeler.prompts import load_prompt_set
from labeler.search import search
from tests import postgres
from tests.imagegen import write_broken_corpus, write_good_images


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
    assert not (config.home / "catalog.db").exists()  # nothing went to SQLite
