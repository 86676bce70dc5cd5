"""The pipeline, in stages joined by one runner (clip-retrieval's reader → mapper → writer):

1. plan: walk the roots and stat each file against the catalog → what to load (:func:`plan_files`);
2. load: read, hash and decode in worker threads, prefetched (:func:`load_files`);
3. embed: the encoder turns a batch of model inputs into vectors (:func:`embed_batch`);
4. write: catalog rows first, then the index catches up from the catalog (:class:`VectorWriter`).

:class:`Runner` joins them; :mod:`labeler.ingest.run` drives it for both ``index``/``ingest`` and
``embed``, and ``labeler.ingest.ray_engine.RayRunner`` swaps only its load and embed stages for
Ray Data's, keeping the plan and the writers.

Crash safety: vectors are committed to the catalog in small transactions and the catalog is
the source of truth; the FAISS index is saved atomically now and then, stamped with the last
catalog change it holds, and replays the newer changes when it is next opened. The model runs a
batch ahead of the writes, so a ``kill -9`` loses the work of at most the last two batches (the
one in the model and the one waiting for it), and a rerun resumes where the catalog left off.
"""

from __future__ import annotations

import os
from collections import deque
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from contextlib import closing
from dataclasses import asdict, dataclass
from itertools import islice
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from ..store.catalog import Embedding, Image, ImageFile
from ..collection import Collection
from ..encoding.encoder import Encoder
from .walk import (LEAVES, CatalogWriter, Containment, IngestCounts, LoadedFile, file_stat, load_file,
                   recorded_roots)

ProgressFn = Callable[[int], None]
FIRST_CHUNK = 8  # images in the first model call of a run
Item = tuple[int | None, Path]  # (the image id when the catalog knows it, the file to load)
Loaded = tuple[int | None, LoadedFile]
# A chunk of loaded items → (image ids and model inputs to embed, how many items to report done).
Register = Callable[[list[Loaded]], tuple[list[tuple[int, object]], int]]


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
    skipped: int = 0  # left out of the collection, each with its reason in ``skips``: not failures
    skips: list[dict] | None = None
    backend: dict | None = None  # which back end embedded (ModelRegistry.backend); None when not embedding

    def to_dict(self) -> dict:
        return asdict(self)


# -- 1. plan ------------------------------------------------------------------------------
def plan_files(session: Session, paths: Sequence[Path], counts: IngestCounts,
               progress: ProgressFn | None = None) -> list[Path]:
    """The files to load: new, changed (size or mtime) or unstattable; the rest are counted.

    A file the catalog already has with the same size and mtime counts as unchanged (or as
    failed again, with its recorded reason) and is reported done through ``progress(1)``.
    """
    # Plain tuples, not ORM objects: this is one row per file of the collection.
    known = {row.path: row for row in session.execute(
        select(ImageFile.path, ImageFile.size, ImageFile.mtime, ImageFile.status, ImageFile.error))}
    to_load: list[Path] = []
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
    return to_load


# -- 2. load ------------------------------------------------------------------------------
def prefetch_map(executor: Executor, fn: Callable, items: Iterable, depth: int) -> Iterator:
    """Like ``executor.map`` but lazy: at most ``depth`` items in flight, results in order."""
    pending: deque = deque()
    for item in items:
        pending.append(executor.submit(fn, item))
        if len(pending) >= depth:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def load_files(items: Iterable, load: Callable, workers: int, depth: int) -> Iterator:
    """``load(item)`` for every item in ``workers`` threads, ``depth`` ahead, results in order."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        yield from prefetch_map(pool, load, items, depth)


# -- 3. embed -----------------------------------------------------------------------------
def embed_batch(encoder: Encoder, pixels: Sequence) -> np.ndarray:
    """Model inputs (``[3, H, W]`` float32 arrays, or torch tensors for the torch mode) → unit vectors ``[N, D]``."""
    return encoder.encode_images(list(pixels))


# -- 4. write -----------------------------------------------------------------------------
class VectorWriter:
    """Writes vectors: catalog first, then the index catches up from the catalog's change log.

    The index is never rewritten per batch: it is saved when its checkpoint says so (a quarter
    of its size unsaved, or an IVF switch or retrain), and at the end of the run.
    """

    def __init__(self, collection: Collection, model_id: int):
        self.collection = collection
        self.model_id = model_id
        self.keeper = collection.index_keeper
        with collection.session() as s:
            self.keeper.get(s)
        self.embedded = 0

    def write(self, image_ids: Sequence[int], vectors: np.ndarray) -> None:
        """Store ``vectors`` ``[N, D]`` of ``image_ids`` ``[N]``; an image that has one keeps it.

        Two units of work: the vectors are committed first, then the index replays the change
        log in a second one, so it never holds a vector the catalog does not.
        """
        if not len(image_ids):
            return
        with self.collection.session() as s:
            keep = self.collection.vectors.add(s, self.model_id, image_ids, vectors)
        with self.collection.session() as s:
            self.keeper.catch_up(s, known=(np.asarray(image_ids, dtype=np.int64)[keep], vectors[keep]))
            self.keeper.checkpoint(s)
        self.embedded += len(keep)

    def save(self) -> None:
        with self.collection.session() as s:
            self.keeper.catch_up(s)
            self.keeper.checkpoint(s, force=True)


# -- the runner ---------------------------------------------------------------------------
class Runner:
    """Load → register → embed → write, a batch at a time, for any list of files.

    ``Runner(collection, embed=False)`` only loads and registers (``ingest``). With ``embed``
    it adopts the model in force and writes every queued image's vector.
    """

    embeds_here = True  # False: another engine's workers run the model (RayRunner)

    def __init__(self, collection: Collection, embed: bool = True):
        config = collection.config
        self.collection = collection
        self.batch = max(1, config.batch_size)
        self.workers = config.workers or max(1, os.cpu_count() or 1)
        self.model_id: int | None = None
        self.encoder: Encoder | None = None
        if embed:
            with collection.session() as s:
                self.model_id = collection.models.adopt(s)
            with collection.session() as s:  # loaded after the adoption commits: no write waits on it
                self.encoder = collection.models.encoder(s)
        if self.encoder is not None and self.embeds_here:
            self.encoder.prepare_images()  # loads while the first files are walked and decoded
        self.writer = VectorWriter(collection, self.model_id) if embed else None
        self._draft = max(config.thumbnail_size, self.encoder.image_size if self.encoder else 0)
        # The model input made in the decode threads, from the draft image the thumbnail comes from.
        self._preprocess = self.encoder.preprocess if embed else None
        self._queued: dict[int, object] = {}  # image id → model input, in arrival order
        # The model runs in its own thread, a batch ahead of the catalog writes, so registering
        # files and writing vectors (SQLite, FAISS) never leave it idle. One thread: batches stay in order.
        self._model = ThreadPoolExecutor(max_workers=1, thread_name_prefix="labeler-model") if embed else None
        self._in_flight: deque[tuple[list[int], Future]] = deque()
        with collection.session() as s:
            roots = recorded_roots(s)
        self.containment = Containment(roots) if roots else None  # None: a catalog older than its roots

    @property
    def embedded(self) -> int:
        return self.writer.embedded if self.writer else 0

    def _load(self, item: Item) -> Loaded:
        image_id, path = item
        if self.containment is not None and not self.containment.contains(path):
            # re-pointed since the walk (or since `index`, for `embed`): never read what it points to now
            return image_id, LoadedFile(Path(path), 0, 0.0, error=LEAVES)
        return image_id, load_file(Path(path), self.collection.config, preprocess=self._preprocess,
                                   draft_size=self._draft)

    def run(self, items: Sequence[Item], register: Register, progress: ProgressFn | None = None) -> None:
        """Load ``items`` and hand each batch to ``register``, which says what to embed."""
        # closing: an error stops the loader threads now, not when the generator is collected;
        # depth: two batches decoding while the model works on a third, so it never waits on files
        # The first chunk is small, so the first vectors (and the first progress) come within a
        # second of the model being ready rather than after a whole batch has decoded.
        size = min(self.batch, FIRST_CHUNK)
        try:
            with closing(load_files(items, self._load, self.workers, depth=self.batch * 2)) as loaded:
                while chunk := list(islice(loaded, size)):
                    to_embed, done = register(chunk)
                    for image_id, pixels in to_embed:
                        self._queued.setdefault(image_id, pixels)
                    if len(self._queued) >= size:
                        self._submit()
                    if progress:
                        progress(done)
                    size = self.batch
        except BaseException:
            self._abandon()
            raise

    def _submit(self, ahead: int = 1) -> None:
        """Hand the queued model inputs to the model thread, a batch per call; write the vectors of
        finished batches while more than ``ahead`` are in flight."""
        ids, pixels = list(self._queued), list(self._queued.values())
        self._queued.clear()
        if self.writer is None:
            return
        for start in range(0, len(ids), self.batch):
            batch = pixels[start:start + self.batch]
            self._in_flight.append((ids[start:start + self.batch], self._model.submit(self._embed, batch)))
            self._write_finished(ahead)

    def _embed(self, pixels: list) -> np.ndarray:
        return embed_batch(self.encoder, pixels)

    def _write_finished(self, ahead: int) -> None:
        """Write batches in order until at most ``ahead`` are in flight (waiting for them if need be)."""
        while len(self._in_flight) > ahead or (self._in_flight and self._in_flight[0][1].done()):
            ids, vectors = self._in_flight.popleft()
            self.writer.write(ids, vectors.result())

    def _abandon(self) -> None:
        """After an error: drop what is queued and in flight; what was written stays written."""
        self._queued.clear()
        while self._in_flight:
            _, future = self._in_flight.popleft()
            future.cancel()

    def flush(self) -> None:
        """Embed and write everything queued, at most ``batch_size`` images per model call."""
        try:
            self._submit()
            if self.writer is not None:
                self._write_finished(0)
        except BaseException:
            self._abandon()
            raise

    def finish(self) -> None:
        """Write what is queued and save the index."""
        self.flush()
        if self.writer is not None:
            self.writer.save()
        if self._model is not None:
            self._model.shutdown()


def record_files(runner: Runner, counts: IngestCounts) -> Register:
    """The register step of ``index``/``ingest``: catalog rows for every file, then queue the
    new contents that have no vector yet."""

    def register(chunk: list[Loaded]) -> tuple[list[tuple[int, object]], int]:
        to_embed = []
        with runner.collection.session() as s:
            writer = CatalogWriter(s, runner.collection.config, counts)
            images = [writer.record(lf) for _, lf in chunk]
            s.flush()
            if runner.model_id is not None:
                have = set(s.scalars(select(Embedding.image_id).where(
                    Embedding.model_id == runner.model_id,
                    Embedding.image_id.in_([im.id for im in images if im is not None]))))
                to_embed = [(im.id, lf.pixels) for (_, lf), im in zip(chunk, images)
                            if im is not None and im.id not in have]
        return to_embed, len(chunk)

    return register


def queue_loaded(chunk: list[Loaded]) -> tuple[list[tuple[int, object]], int]:
    """The register step of ``embed``: images already in the catalog; a file that no longer
    decodes is skipped (and not reported done)."""
    ok = [(image_id, lf.pixels) for image_id, lf in chunk if lf.error is None]
    return ok, len(ok)


def unembedded_images(collection: Collection, model_id: int) -> list[Item]:
    """Every present image without a vector for ``model_id``, with its first present file."""
    with collection.session() as s:
        done = select(Embedding.image_id).where(Embedding.model_id == model_id)
        rows = s.execute(select(Image.id, ImageFile.path).join(ImageFile, ImageFile.image_id == Image.id)
                         .where(Image.status == "ok", ImageFile.status == "ok", Image.id.not_in(done))
                         .order_by(Image.id, ImageFile.id)).all()
    first_path: dict[int, str] = {}
    for image_id, path in rows:
        first_path.setdefault(image_id, path)
    return [(image_id, Path(path)) for image_id, path in first_path.items()]
