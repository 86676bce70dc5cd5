"""The index change log is compacted once every saved index holds its rows, and a server that
stood before the compacted rows notices the gap and loads the saved index instead."""

from __future__ import annotations

import time

from sqlalchemy import func, select

from labeler.collection import Collection
from labeler.config import Config
from labeler.ingest.run import index_paths
from labeler.store.catalog import IndexChange
from labeler.vectors import index_keeper
from tests.imagegen import write_good_images


def _held(collection: Collection) -> int:
    """How many vectors the collection's index holds, read in one unit of work."""
    with collection.session() as s:
        return len(collection.index_keeper.get(s))


def _rows(collection: Collection) -> tuple[int, int]:
    with collection.session() as s:
        return s.scalar(select(func.count()).select_from(IndexChange)), s.scalar(select(func.max(IndexChange.id)))


def test_the_change_log_is_compacted_and_a_server_behind_it_reloads(tmp_path, model_spec, monkeypatch):
    first, second = tmp_path / "first", tmp_path / "second"
    write_good_images(first, 6, seed=51)
    write_good_images(second, 6, seed=52)
    config = Config(home=tmp_path / "home", model=model_spec)
    index_paths(Collection(config), [first])
    count, newest = _rows(Collection(config))
    assert count == newest >= 6  # below KEEP_CHANGES rows: nothing compacted yet

    server = Collection(config)
    assert _held(server) == 6  # a server, standing at the first run's last change

    monkeypatch.setattr(index_keeper, "KEEP_CHANGES", 0)
    index_paths(Collection(config), [second])
    count, newest = _rows(Collection(config))
    assert count == 1 and newest >= 12  # every saved index holds the rest: only the newest row stays

    time.sleep(index_keeper.REFRESH_S)
    assert _held(server) == 12  # the gap seen: the saved index loaded, nothing missed
