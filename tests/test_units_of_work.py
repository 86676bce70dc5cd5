"""One unit of work per operation: how many database transactions indexing and labeling begin.

Counted on the real catalog with SQLAlchemy's ``after_begin`` event, which fires once for every
transaction any session begins: each one is a visit to ``labeler.store.db``.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import event
from sqlalchemy.orm import Session

from labeler.collection import Collection
from labeler.config import Config
from labeler.core.prompts import load_prompt_set
from labeler.ingest.run import index_paths
from labeler.labeling.bulk import label_collection

BATCH = 8


@contextmanager
def counting_transactions():
    begun = [0]

    def count(*_args) -> None:
        begun[0] += 1

    event.listen(Session, "after_begin", count)
    try:
        yield begun
    finally:
        event.remove(Session, "after_begin", count)


def test_indexing_visits_the_catalog_at_most_three_times_per_batch(world, tmp_path, model_spec):
    collection = Collection(Config(home=tmp_path / "home", model=model_spec, batch_size=BATCH))
    with counting_transactions() as begun:
        report = index_paths(collection, [world])
    batches = -(-report.embedded // BATCH)
    assert report.embedded == 40 and batches == 5
    # per batch: register the files, store the vectors, catch the index up; then a fixed few
    # around the run (roots, plan, adopt, open the index, mark missing, the final save)
    fixed = 10
    assert begun[0] <= 3 * batches + fixed, begun[0]

    with counting_transactions() as begun:  # nothing new: no batch at all
        again = index_paths(collection, [world])
    assert again.embedded == 0 and begun[0] <= fixed, begun[0]


def test_labeling_reads_each_chunk_in_one_unit_of_work(indexed_collection):
    prompt_set = load_prompt_set(Path("prompt_sets/workshop.yaml"))
    with counting_transactions() as begun:
        report = label_collection(indexed_collection, prompt_set, chunk_rows=10)
    chunks = -(-report.images // 10)
    assert report.images == 40 and chunks == 4
    # plan, start, one read per chunk (and the read that finds the end) for the scoring pass of a
    # first run (bulk.rank_ahead) and again for the writing pass, one write per chunk, finish
    assert report.ranked_ahead and begun[0] <= 3 * chunks + 5, begun[0]

    with counting_transactions() as begun:  # nothing changed: the plan alone
        rerun = label_collection(indexed_collection, prompt_set, chunk_rows=10)
    assert rerun.unchanged == report.labeled and begun[0] == 1, begun[0]
