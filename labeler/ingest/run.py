"""Running the pipeline: which engine runs it, and the two entry points, ``index`` and ``embed``.

The engine choice sits here, beside both engines (clip-retrieval's runner and distributor): the
local :class:`~labeler.ingest.pipeline.Runner` and Ray's
:class:`~labeler.ingest.ray_engine.RayRunner`, which subclasses it. Neither engine imports this.
"""

from __future__ import annotations

import fcntl
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Sequence

from ..collection import Collection
from ..store import db
from ..errors import LabelerError, user_file
from ..vectors.index_keeper import bump_generation
from .pipeline import (IndexReport, ProgressFn, Runner, plan_files, queue_loaded, record_files,
                       unembedded_images)
from .walk import CatalogWriter, IngestCounts, check_root, record_roots, utf8_name, walk


def make_runner(collection: Collection, embed: bool = True) -> Runner:
    """The runner of ``config.engine``: this process's threads, or Ray (``labeler.ingest.ray_engine``)."""
    if collection.config.engine == "ray":
        from .ray_engine import RayRunner  # imports ray only when asked for

        return RayRunner(collection, embed)
    return Runner(collection, embed)


INDEX_LOCK = ".index.lock"


class IndexRunning(LabelerError):
    """Another ``index``, ``ingest`` or ``embed`` holds the home's lock."""


@contextmanager
def index_lock(config) -> Iterator[None]:
    """Hold the home's index lock (``<home>/.index.lock``) for one run; a second run on the same
    home exits at once with the first one's pid (two at once raced on the catalog's rows: a
    UNIQUE failure, or ``table index_changes already exists`` on a fresh home)."""
    if config.database_url is not None:  # a shared catalog server: each home's runs are its own
        yield
        return
    db.get_engine(config)  # makes the home, or says in one line why it cannot (read-only, ...)
    with user_file(config.home / INDEX_LOCK), open(config.home / INDEX_LOCK, "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "unknown"
            raise IndexRunning(f"another index is running on {config.home} (pid {holder}); "
                               "wait for it to finish, then run this again") from None
        lock.seek(0)
        lock.truncate()
        lock.write(str(os.getpid()))
        lock.flush()
        try:
            yield
        finally:
            lock.truncate(0)


def index_paths(collection: Collection, roots: Sequence[Path], embed: bool = True,
                progress: ProgressFn | None = None, total: Callable[[int], None] | None = None) -> IndexReport:
    """Ingest every image under ``roots`` and (with ``embed``) embed what is new, holding the
    home's index lock (:func:`index_lock`).

    ``total(n)`` is called once the walk knows how many files there are; ``progress(k)`` after
    every ``k`` files handled.
    """
    for root in roots:
        check_root(root)  # before anything is walked or made: a special filesystem is refused at once
    with index_lock(collection.config):
        return _index_paths(collection, roots, embed, progress, total)


def _index_paths(collection: Collection, roots: Sequence[Path], embed: bool,
                 progress: ProgressFn | None, total: Callable[[int], None] | None) -> IndexReport:
    started = time.monotonic()
    counts = IngestCounts()
    paths = list(walk(roots, counts.skipped))
    roots = [root for root in roots if utf8_name(root)]  # the others are skipped, with their reason
    with collection.session() as s:
        record_roots(s, roots)  # serving checks every file against them
    if total:
        total(len(paths))
    with collection.session() as s:
        to_load = plan_files(s, paths, counts, progress, collection.config.max_file_bytes)

    runner = make_runner(collection, embed)
    runner.run([(None, path) for path in to_load], record_files(runner, counts), progress)
    # Marked after the new files are in, so a moved file keeps its image (and its vector).
    with collection.session() as s:
        newly_missing = CatalogWriter(s, collection.config, counts).mark_missing(roots, {str(p) for p in paths})
        if newly_missing or counts.revived:
            bump_generation(s)  # present images came or went: servers drop or regain their vectors
    if runner.writer is not None:
        runner.flush()
        with collection.session() as s:
            collection.index_keeper.catch_up(s)  # images gone or back, logged by the catalog's triggers
        # Images registered earlier by `ingest` alone (or before a crash) still need vectors.
        runner.run(unembedded_images(collection, runner.model_id), queue_loaded)
        runner.finish()
    with collection.session() as s:
        db.analyze_after_bulk(s, counts.added + runner.embedded, ("images", "image_files", "embeddings"))
    report = IndexReport(added=counts.added, unchanged=counts.unchanged, failed=counts.failed,
                         embedded=runner.embedded, duplicates=counts.duplicates,
                         moved=counts.moved, missing=counts.missing, files=len(paths),
                         model=model_spec(collection) if embed else None, failures=counts.failures,
                         skipped=len(counts.skipped), skips=counts.skipped,
                         backend=model_backend(collection) if embed else None)
    report.seconds = round(time.monotonic() - started, 3)
    return report


def model_spec(collection: Collection) -> str:
    """The spec of the model in force (resolved once per collection handle)."""
    with collection.session() as s:
        return collection.models.spec(s)


def model_backend(collection: Collection) -> dict:
    """Which back end runs the model in force here; loads nothing."""
    with collection.session() as s:
        return collection.models.backend(s)


def embed_pending(collection: Collection, progress: ProgressFn | None = None,
                  total: Callable[[int], None] | None = None) -> int:
    """Embed every present image that has no vector for the collection's model yet (under the
    home's index lock)."""
    with index_lock(collection.config):
        return _embed_pending(collection, progress, total)


def _embed_pending(collection: Collection, progress: ProgressFn | None,
                   total: Callable[[int], None] | None) -> int:
    runner = make_runner(collection, embed=True)
    items = unembedded_images(collection, runner.model_id)
    if total:
        total(len(items))
    runner.run(items, queue_loaded, progress)
    runner.finish()
    return runner.embedded
