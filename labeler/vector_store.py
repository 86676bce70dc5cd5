"""The vector store: the catalog's stored image vectors, and the per-model cache of prompt vectors.

The catalog keeps every vector (the FAISS index is a cache rebuilt from here). Reads cover only
images whose file is present; ``model_id`` defaults to the model in force.
"""

from __future__ import annotations

import hashlib
from typing import Iterator, Sequence

import numpy as np
from sqlalchemy import func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from . import db
from .catalog import Embedding, Image, PromptEmbedding
from .config import Config
from .model_registry import ModelRegistry


class VectorStore:
    """``VectorStore(config, models)``: read and add stored vectors, encode texts through a cache."""

    def __init__(self, config: Config, models: ModelRegistry):
        self.config = config
        self.models = models

    def _present(self, model_id: int, *columns):
        return (select(*columns).join(Image, Image.id == Embedding.image_id)
                .where(Embedding.model_id == model_id, Image.status == "ok").order_by(Embedding.image_id))

    def ids(self, model_id: int | None = None) -> np.ndarray:
        """Ids ``[N]`` of the present images that have a vector for the model; no vectors are read."""
        model_id = model_id or self.models.require_id()
        with db.session_scope(self.config) as s:
            return np.fromiter(s.scalars(self._present(model_id, Embedding.image_id)), dtype=np.int64)

    def read(self, image_ids: Sequence[int] | None = None, model_id: int | None = None
             ) -> tuple[np.ndarray, np.ndarray]:
        """Stored vectors: (ids ``[N]`` int64, vectors ``[N, D]`` float32), in id order.

        Only images whose file is still present; ``image_ids`` restricts to those ids.
        """
        model_id = model_id or self.models.require_id()
        query = self._present(model_id, Embedding.image_id, Embedding.vector)
        with db.session_scope(self.config) as s:
            if image_ids is None:
                rows = s.execute(query).all()
            else:  # in chunks: SQLite caps the number of bound parameters
                wanted = list(map(int, image_ids))
                rows = [r for start in range(0, len(wanted), 10_000) for r in s.execute(
                    query.where(Embedding.image_id.in_(wanted[start:start + 10_000]))).all()]
        if not rows:
            return np.zeros(0, np.int64), np.zeros((0, self.models.dim(model_id)), np.float32)
        return _decode(rows)

    def chunks(self, model_id: int | None = None, chunk_rows: int = 50_000
               ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Like :meth:`read` for every present image, ``chunk_rows`` at a time, so memory stays bounded.

        Keyset paging (``image_id > last``) avoids both OFFSET scans and huge ``IN`` lists.
        """
        model_id = model_id or self.models.require_id()
        last = -1
        while True:
            with db.session_scope(self.config) as s:
                rows = s.execute(self._present(model_id, Embedding.image_id, Embedding.vector)
                                 .where(Embedding.image_id > last).limit(chunk_rows)).all()
            if not rows:
                return
            ids, vecs = _decode(rows)
            yield ids, vecs
            last = int(ids[-1])

    def count(self, model_id: int | None = None) -> int:
        """How many vectors the model has (present images or not); 0 before any."""
        model_id = model_id or self.models.current_id()
        if model_id is None:
            return 0
        with db.session_scope(self.config) as s:
            return s.scalar(select(func.count()).select_from(Embedding).where(Embedding.model_id == model_id))

    def add(self, model_id: int, image_ids: Sequence[int], vectors: np.ndarray) -> np.ndarray:
        """Store ``vectors`` ``[N, D]`` of ``image_ids`` ``[N]``, one transaction; returns the
        positions ``[K]`` written (an image that already has a vector keeps it)."""
        with db.session_scope(self.config) as s:
            # A duplicate may reach two batches; the primary key keeps one vector per image.
            done = set(s.scalars(select(Embedding.image_id).where(
                Embedding.model_id == model_id, Embedding.image_id.in_(list(map(int, image_ids))))))
            keep = [i for i, image_id in enumerate(image_ids) if image_id not in done]
            s.add_all(Embedding(image_id=int(image_ids[i]), model_id=model_id, vector=vectors[i].tobytes())
                      for i in keep)
        return np.asarray(keep, dtype=np.int64)

    def text_vectors(self, texts: Sequence[str]) -> np.ndarray:
        """Unit vectors ``[N, D]`` for ``texts``; each text is encoded at most once per model."""
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.models.encoder().dim), np.float32)
        keys = [hashlib.sha256(t.encode()).hexdigest() for t in texts]
        with db.session_scope(self.config) as s:
            model_id = self.models.record(s).id
            found: dict[str, bytes] = {}
            unique = list(dict.fromkeys(keys))
            for start in range(0, len(unique), 500):
                chunk = unique[start:start + 500]
                found.update(s.execute(select(PromptEmbedding.text_hash, PromptEmbedding.vector).where(
                    PromptEmbedding.model_id == model_id, PromptEmbedding.text_hash.in_(chunk))).all())
            missing = {k: t for k, t in zip(keys, texts) if k not in found}
            if missing:
                vecs = self.models.encoder().encode_texts(list(missing.values()))
                rows = [{"model_id": model_id, "text_hash": key, "text": text, "vector": vec.tobytes()}
                        for (key, text), vec in zip(missing.items(), vecs)]
                found.update((row["text_hash"], row["vector"]) for row in rows)
                _insert_new(s, rows)
        return np.stack([np.frombuffer(found[k], dtype=np.float32) for k in keys])


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
