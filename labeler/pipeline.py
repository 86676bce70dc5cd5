"""The runner: walk → load (worker threads) → embed (the model) → write (catalog, then index).

Crash safety: vectors are committed to the catalog in small transactions and the catalog is
the source of truth; the FAISS index is saved atomically every ``checkpoint_every`` images and
re-synced from the catalog when it is next opened. A ``kill -9`` loses at most the last batch,
and a rerun resumes where the catalog left off.
"""

from __future__ import annotations

import os
import time
from collections import deque
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
from sqlalchemy import select

from .catalog import Embedding, Image, ImageFile
from .collection import Collection
from .errors import LabelerError
from .ingest import CatalogWriter, IngestCounts, LoadedFile, file_stat, load_file, walk

ProgressFn = Callable[[int], None]


@dataclass
class IndexReport:
    """The ``index --json`` contract: added, unchanged, failed, embedded, failures (+ extras)."""

    added: int = 0
    unchanged: int = 0
    failed: int = 0
    embedded: int = 0
    duplicates: int = 0
    moved: int = 0
    missing: int = 0
    files: int = 0
    model: str | None = None
    seconds: float = 0.0
    failures: list[dict] | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def prefetch_map(executor: Executor, fn: Callable, items: Iterable, depth: int) -> Iterator:
    """Like ``executor.map`` but lazy: at most ``depth`` items in flight, results in order."""
    pending: deque = deque()
    for item in items:
        pending.append(executor.submit(fn, item))
        if len(pending) >= depth:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def _workers(collection: Collection) -> int:
    return collection.config.workers or max(1, os.cpu_count() or 1)


class VectorWriter:
    """Embeds batches of model inputs and writes their vectors: catalog first, index second."""

    def __init__(self, collection: Collection, model_id: int):
        self.collection = collection
        self.model_id = model_id
        self.index = collection.sync_index()
        self.embedded = 0
        self._since_save = 0

    def write(self, image_ids: Sequence[int], pixels: Sequence) -> None:
        if not image_ids:
            return
        vectors = self.collection.encoder.encode_images(list(pixels))
        with self.collection.session() as s:
            # A duplicate may reach two batches; the primary key keeps one vector per image.
            done = set(s.scalars(select(Embedding.image_id).where(
                Embedding.model_id == self.model_id, Embedding.image_id.in_(list(image_ids)))))
            keep = [i for i, image_id in enumerate(image_ids) if image_id not in done]
            s.add_all(Embedding(image_id=image_ids[i], model_id=self.model_id,
                                vector=vectors[i].tobytes()) for i in keep)
        ids = np.asarray([image_ids[i] for i in keep], dtype=np.int64)
        self.index.add(ids, vectors[keep])
        self.embedded += len(keep)
        self._since_save += len(keep)
        if self._since_save >= self.collection.config.checkpoint_every:
            self.save()

    def save(self) -> None:
        self.index.save(self.collection.index_path(self.model_id))
        self._since_save = 0


def index_paths(collection: Collection, roots: Sequence[Path], embed: bool = True,
                progress: ProgressFn | None = None, total: Callable[[int], None] | None = None) -> IndexReport:
    """Ingest every image under ``roots`` and (with ``embed``) embed what is new.

    ``total(n)`` is called once the walk knows how many files there are; ``progress(k)`` after
    every ``k`` files handled.
    """
    started = time.monotonic()
    config = collection.config
    for root in roots:
        if not Path(root).exists():
            raise LabelerError(f"no such file or folder: {root}")
    paths = list(walk(roots))
    if total:
        total(len(paths))
    counts = IngestCounts()
    to_load: list[Path] = []
    with collection.session() as s:
        # Plain tuples, not ORM objects: this is one row per file of the collection.
        known = {row.path: row for row in s.execute(
            select(ImageFile.path, ImageFile.size, ImageFile.mtime, ImageFile.status, ImageFile.error))}
    for path in paths:
        row = known.get(str(path))
        try:
            size, mtime = file_stat(path)
        except OSError:
            to_load.append(path)
            continue
        if row is not None and row.size == size and row.mtime == mtime and row.status in ("ok", "failed"):
            if row.status == "failed":
                counts.failed += 1
                counts.failures.append({"path": row.path, "reason": row.error})
            else:
                counts.unchanged += 1
            if progress:
                progress(1)
        else:
            to_load.append(path)

    model_id = collection.adopt_model() if embed else None
    vectors = VectorWriter(collection, model_id) if embed else None
    preprocess = collection.encoder.preprocess if embed else None
    draft = max(config.thumbnail_size, collection.encoder.image_size if embed else 0)
    batch = max(1, config.batch_size)

    def load(path: Path) -> LoadedFile:
        return load_file(path, config, preprocess=preprocess, draft_size=draft)

    pending_ids: list[int] = []
    pending_pixels: list = []
    with ThreadPoolExecutor(max_workers=_workers(collection)) as pool:
        loaded_iter = prefetch_map(pool, load, to_load, depth=batch * 2)
        while True:
            chunk = [lf for _, lf in zip(range(batch), loaded_iter)]
            if not chunk:
                break
            with collection.session() as s:
                writer = CatalogWriter(s, config, counts)
                images = [writer.record(lf) for lf in chunk]
                s.flush()
                if embed:
                    have = set(s.scalars(select(Embedding.image_id).where(
                        Embedding.model_id == model_id,
                        Embedding.image_id.in_([im.id for im in images if im is not None]))))
                    for lf, im in zip(chunk, images):
                        if im is not None and im.id not in have and im.id not in pending_ids:
                            pending_ids.append(im.id)
                            pending_pixels.append(lf.pixels)
            if vectors is not None and len(pending_ids) >= batch:
                vectors.write(pending_ids, pending_pixels)
                pending_ids, pending_pixels = [], []
            if progress:
                progress(len(chunk))
    # Marked after the new files are in, so a moved file keeps its image (and its vector).
    with collection.session() as s:
        newly_missing = CatalogWriter(s, config, counts).mark_missing(roots, {str(p) for p in paths})
    if vectors is not None:
        vectors.write(pending_ids, pending_pixels)
        vectors.index.remove(np.asarray(newly_missing, dtype=np.int64))
        revived, stored = collection.vectors(image_ids=counts.revived, model_id=model_id)
        vectors.index.add(revived, stored)
        # Images registered earlier by `ingest` alone (or before a crash) still need vectors.
        embed_pending(collection, vectors=vectors)
        vectors.save()
    report = IndexReport(added=counts.added, unchanged=counts.unchanged, failed=counts.failed,
                         embedded=vectors.embedded if vectors else 0, duplicates=counts.duplicates,
                         moved=counts.moved, missing=counts.missing, files=len(paths),
                         model=collection.model_spec if embed else None, failures=counts.failures)
    report.seconds = round(time.monotonic() - started, 3)
    return report


def embed_pending(collection: Collection, progress: ProgressFn | None = None,
                  total: Callable[[int], None] | None = None, vectors: VectorWriter | None = None) -> int:
    """Embed every present image that has no vector for the collection's model yet."""
    model_id = collection.adopt_model()
    own_writer = vectors is None
    vectors = vectors or VectorWriter(collection, model_id)
    before = vectors.embedded
    with collection.session() as s:
        done = select(Embedding.image_id).where(Embedding.model_id == model_id)
        rows = s.execute(select(Image.id, ImageFile.path).join(ImageFile, ImageFile.image_id == Image.id)
                         .where(Image.status == "ok", ImageFile.status == "ok", Image.id.not_in(done))
                         .order_by(Image.id, ImageFile.id)).all()
    first_path: dict[int, str] = {}
    for image_id, path in rows:
        first_path.setdefault(image_id, path)
    if total:
        total(len(first_path))
    config = collection.config
    preprocess = collection.encoder.preprocess
    draft = max(config.thumbnail_size, collection.encoder.image_size)
    batch = max(1, config.batch_size)
    items = list(first_path.items())

    def load(item: tuple[int, str]) -> tuple[int, LoadedFile]:
        return item[0], load_file(Path(item[1]), config, preprocess=preprocess, draft_size=draft)

    ids: list[int] = []
    pixels: list = []
    with ThreadPoolExecutor(max_workers=_workers(collection)) as pool:
        for image_id, lf in prefetch_map(pool, load, items, depth=batch * 2):
            if lf.error is None:
                ids.append(image_id)
                pixels.append(lf.pixels)
            if len(ids) >= batch:
                vectors.write(ids, pixels)
                if progress:
                    progress(len(ids))
                ids, pixels = [], []
        vectors.write(ids, pixels)
        if progress and ids:
            progress(len(ids))
    if own_writer:
        vectors.save()
    return vectors.embedded - before
