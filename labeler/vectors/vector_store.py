"""The vector store: the catalog's stored image vectors, and the per-model cache of prompt vectors.

The catalog keeps every vector (the FAISS index is a cache rebuilt from here). Reads cover only
images whose file is present; ``model_id`` defaults to the model in force. Every change to that
set is logged in ``index_changes`` by database triggers, so an index catches up by reading only
:meth:`VectorStore.changes_since` its stamp.
"""

from __future__ import annotations

import hashlib
import time
from typing import Iterator, Sequence

import numpy as np
from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..store.catalog import Embedding, Image, IndexChange, PromptEmbedding, utcnow
from ..store.db import driver_rows
from ..config import Config
from .model_registry import ModelRegistry


class VectorStore:
    """``VectorStore(config, models)``: read and add stored vectors, encode texts through a cache.

    Every method takes the caller's ``session``: one operation, one unit of work.
    """

    def __init__(self, config: Config, models: ModelRegistry):
        self.config = config
        self.models = models

    def _present(self, model_id: int, *columns):
        # EXISTS, not a join: with a join SQLite walked the present images from the first id
        # after ``last`` to the end and sorted them, on every chunk of :meth:`chunks` (0.31 s a
        # chunk at 1M images against 0.05 s now, and growing with the collection)
        present = select(Image.id).where(Image.id == Embedding.image_id, Image.status == "ok").exists()
        return select(*columns).where(Embedding.model_id == model_id, present).order_by(Embedding.image_id)

    def ids(self, session: Session, model_id: int | None = None) -> np.ndarray:
        """Ids ``[N]`` of the present images that have a vector for the model; no vectors are read."""
        model_id = model_id or self.models.require_id(session)
        return np.fromiter(session.scalars(self._present(model_id, Embedding.image_id)), dtype=np.int64)

    def read(self, session: Session, image_ids: Sequence[int] | None = None, model_id: int | None = None
             ) -> tuple[np.ndarray, np.ndarray]:
        """Stored vectors: (ids ``[N]`` int64, vectors ``[N, D]`` float32), in id order.

        Only images whose file is still present; ``image_ids`` restricts to those ids.
        """
        model_id = model_id or self.models.require_id(session)
        query = self._present(model_id, Embedding.image_id, Embedding.vector)
        if image_ids is None:
            rows = session.execute(query).all()
        else:  # in chunks: SQLite caps the number of bound parameters
            wanted = list(map(int, image_ids))
            rows = [r for start in range(0, len(wanted), 10_000) for r in session.execute(
                query.where(Embedding.image_id.in_(wanted[start:start + 10_000]))).all()]
        if not rows:
            return np.zeros(0, np.int64), np.zeros((0, self.models.dim(session, model_id)), np.float32)
        return _decode(rows)

    def read_after(self, session: Session, model_id: int, last: int, rows: int
                   ) -> tuple[np.ndarray, np.ndarray]:
        """The next ``rows`` stored vectors of present images after image id ``last``, like
        :meth:`read`; empty arrays at the end. Keyset paging: no OFFSET scan, no huge ``IN`` list."""
        found = driver_rows(session, self._present(model_id, Embedding.image_id, Embedding.vector)
                             .where(Embedding.image_id > last).limit(rows))
        if not found:
            return np.zeros(0, np.int64), np.zeros((0, 0), np.float32)
        return _decode(found)

    def chunks(self, session: Session, model_id: int | None = None, chunk_rows: int = 50_000
               ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Like :meth:`read` for every present image, ``chunk_rows`` at a time, so memory stays
        bounded; every chunk in ``session`` (see :meth:`read_after` for a session per chunk)."""
        model_id = model_id or self.models.require_id(session)
        last = -1
        while True:
            ids, vecs = self.read_after(session, model_id, last, chunk_rows)
            if not len(ids):
                return
            yield ids, vecs
            last = int(ids[-1])

    def count(self, session: Session, model_id: int | None = None) -> int:
        """How many vectors the model has (present images or not); 0 before any."""
        model_id = model_id or self.models.current_id(session)
        if model_id is None:
            return 0
        return session.scalar(select(func.count()).select_from(Embedding).where(Embedding.model_id == model_id))

    def count_present(self, session: Session, model_id: int | None = None) -> int:
        """How many present images have a vector for the model: the size an index will have."""
        model_id = model_id or self.models.require_id(session)
        return session.scalar(select(func.count()).select_from(Embedding).join(Image, Image.id == Embedding.image_id)
                              .where(Embedding.model_id == model_id, Image.status == "ok"))

    def sample(self, session: Session, size: int, model_id: int | None = None, seed: int = 0
               ) -> tuple[np.ndarray, np.ndarray]:
        """Up to ``size`` stored vectors of present images, drawn at random: (ids ``[M]``, vectors ``[M, D]``)."""
        ids = self.ids(session, model_id)
        if len(ids) > size:
            ids = np.sort(np.random.default_rng(seed).choice(ids, size, replace=False))
        return self.read(session, ids, model_id=model_id)

    def compact_changes(self, session: Session, below: int) -> int:
        """Delete change-log rows with an id under ``below``; the newest row always stays (an
        index's stamp is compared with it). Returns how many were deleted."""
        newest = session.scalar(select(func.max(IndexChange.id))) or 0
        result = session.execute(delete(IndexChange).where(IndexChange.id < min(below, newest)))
        return result.rowcount or 0

    def oldest_change(self, session: Session) -> int:
        """The id of the oldest ``index_changes`` row left (compaction deletes the old ones); 0 before any."""
        return session.scalar(select(func.min(IndexChange.id))) or 0

    def latest_change(self, session: Session) -> int:
        """The id of the newest ``index_changes`` row; 0 before any. One indexed lookup."""
        return session.scalar(select(func.max(IndexChange.id))) or 0

    def changes_since(self, session: Session, after: int, model_id: int | None = None
                      ) -> tuple[list[tuple[int, int, str]], np.ndarray]:
        """Changes newer than ``after`` that concern the model, and where they leave things now:
        (``(change id, image id, op)`` in order, ids ``[K]`` of the touched images that are
        present with a vector). Read in the caller's ``session``, so both agree.

        ``op`` is ``add``, ``remove`` or ``update`` (the vector was replaced); an image that came
        or went (``model_id`` NULL in the log) concerns every model.
        """
        model_id = model_id or self.models.require_id(session)
        changes = [tuple(row) for row in session.execute(
            select(IndexChange.id, IndexChange.image_id, IndexChange.op)
            .where(IndexChange.id > after,
                   (IndexChange.model_id == model_id) | IndexChange.model_id.is_(None))
            .order_by(IndexChange.id))]
        touched = sorted({c[1] for c in changes})
        present = [i for start in range(0, len(touched), 10_000) for i in session.scalars(
            self._present(model_id, Embedding.image_id)
            .where(Embedding.image_id.in_(touched[start:start + 10_000])))]
        return changes, np.asarray(present, dtype=np.int64)

    def add(self, session: Session, model_id: int, image_ids: Sequence[int], vectors: np.ndarray) -> np.ndarray:
        """Store ``vectors`` ``[N, D]`` of ``image_ids`` ``[N]`` in the caller's ``session``;
        returns the positions ``[K]`` written (an image that already has a vector keeps it)."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        # A duplicate may reach two batches; the primary key keeps one vector per image.
        done: set[int] = set()
        wanted = list(map(int, image_ids))
        for start in range(0, len(wanted), 10_000):
            done.update(session.scalars(select(Embedding.image_id).where(
                Embedding.model_id == model_id, Embedding.image_id.in_(wanted[start:start + 10_000]))))
        keep, seen = [], set()
        for i, image_id in enumerate(wanted):
            if image_id not in done and image_id not in seen:
                keep.append(i)
                seen.add(image_id)
        if keep:  # one executemany, not an ORM object per vector
            now = utcnow()
            session.execute(insert(Embedding), [{"image_id": wanted[i], "model_id": model_id,
                                                 "vector": vectors[i].tobytes(), "created_at": now} for i in keep])
        return np.asarray(keep, dtype=np.int64)

    def text_vectors(self, session: Session, texts: Sequence[str], query: bool = False) -> np.ndarray:
        """Unit vectors ``[N, D]`` for ``texts``; each text is encoded at most once per model.

        ``query=True`` marks them as search texts: kept, least recently used dropped first, up to
        ``LABELER_QUERY_CACHE_TEXTS`` per model (a prompt's text is kept for good, and a search
        text a prompt set later uses becomes one).
        """
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.models.encoder(session).dim), np.float32)
        keys = [hashlib.sha256(t.encode()).hexdigest() for t in texts]
        now = time.time()
        model_id = self.models.record(session).id
        found = _cached_texts(session, model_id, keys, query, now)
        missing = {k: t for k, t in zip(keys, texts) if k not in found}
        if missing:
            vecs = self.models.encoder(session).encode_texts(list(missing.values()))
            rows = [{"model_id": model_id, "text_hash": key, "text": text, "vector": vec.tobytes(),
                     "query_used_at": now if query else None}
                    for (key, text), vec in zip(missing.items(), vecs)]
            found.update((row["text_hash"], row["vector"]) for row in rows)
            _insert_new(session, rows)
            if query:
                _drop_least_recent_queries(session, model_id, self.config.query_cache_texts)
        return np.stack([np.frombuffer(found[k], dtype=np.float32) for k in keys])


QUERY_TOUCH_SECONDS = 3600  # a search text's last use is recorded to the hour


def _cached_texts(session: Session, model_id: int, keys: list[str], query: bool, now: float) -> dict[str, bytes]:
    """The cached vectors of the texts hashed ``keys``: {hash: vector bytes}; the search texts'
    marks are brought up to date (``query``: used ``now``, else now a prompt's, kept for good)."""
    found: dict[str, bytes] = {}
    touch: list[str] = []  # rows whose mark changes: a search text used again, or now a prompt's
    unique = list(dict.fromkeys(keys))
    for start in range(0, len(unique), 500):
        chunk = unique[start:start + 500]
        for key, vector, used in session.execute(select(
                PromptEmbedding.text_hash, PromptEmbedding.vector, PromptEmbedding.query_used_at).where(
                PromptEmbedding.model_id == model_id, PromptEmbedding.text_hash.in_(chunk))):
            found[key] = vector
            # a search's write only when the mark is an hour stale: reads stay reads
            if used is not None and (not query or now - used > QUERY_TOUCH_SECONDS):
                touch.append(key)
    if touch:
        session.execute(update(PromptEmbedding).where(
            PromptEmbedding.model_id == model_id, PromptEmbedding.text_hash.in_(touch))
            .values(query_used_at=now if query else None))
    return found


def _drop_least_recent_queries(session: Session, model_id: int, keep: int) -> None:
    """Delete the search texts of ``model_id`` past the ``keep`` most recently used."""
    queries = select(PromptEmbedding.text_hash).where(PromptEmbedding.model_id == model_id,
                                                      PromptEmbedding.query_used_at.is_not(None))
    count = session.scalar(select(func.count()).select_from(queries.subquery()))
    if count <= keep:
        return
    oldest = list(session.scalars(queries.order_by(PromptEmbedding.query_used_at, PromptEmbedding.text_hash)
                                  .limit(count - keep)))
    for start in range(0, len(oldest), 500):
        session.execute(delete(PromptEmbedding).where(PromptEmbedding.model_id == model_id,
                                                      PromptEmbedding.text_hash.in_(oldest[start:start + 500])))


def _insert_new(session: Session, rows: list[dict]) -> None:
    """Cache prompt-vector ``rows``; a text another process cached meanwhile is skipped (same model: same vector)."""
    table = PromptEmbedding.__table__
    try:
        with session.begin_nested():
            session.execute(insert(table), rows)
    except IntegrityError:
        for row in rows:
            try:
                with session.begin_nested():
                    session.execute(insert(table), [row])
            except IntegrityError:
                pass


def _decode(rows) -> tuple[np.ndarray, np.ndarray]:
    """``(image_id, vector bytes)`` rows → (ids ``[N]`` int64, vectors ``[N, D]`` float32)."""
    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    return ids, np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), -1)
