"""The same code on PostgreSQL: migrations, ingest, embed, label, search and check."""

from __future__ import annotations

import pytest

from labeler.collection import Collection
from labeler.config import Config
from labeler.labeling import label_collection
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
    write_broken_corpus(photos / "broken")

    report = index_paths(collection, [photos])
    assert (report.added, report.embedded, report.failed) == (10, 10, 8)
    again = index_paths(Collection(config), [photos])
    assert (again.unchanged, again.embedded) == (10, 0)

    labels = label_collection(collection, load_prompt_set("workshop"))
    assert labels.labeled == 10 * len(load_prompt_set("workshop").groups)
    hits = search(collection, "a red hammer", k=3)
    assert len(hits) == 3 and hits[0].score >= hits[-1].score
    assert not (config.home / "catalog.db").exists()  # nothing went to SQLite
