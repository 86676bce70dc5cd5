"""A collection: the catalog, its model, its index and the encoder, as one object.

Every stage (ingest, embed, label, search, the web app) works through a ``Collection``, so
the model choice and the index lifecycle live in one place.
"""

from __future__ import annotations

import hashlib
import threading
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from . import db
from .catalog import Embedding, Image, Model, PromptEmbedding, Setting
from .config import Config
from .encoder import DEFAULT_MODEL, Encoder, load_encoder
from .errors import CatalogError
from .index import FaissIndex

MODEL_KEY = "model"


class Collection:
    """``Collection(config)``: open (and migrate on first use) the catalog under ``config.home``."""

    def __init__(self, config: Config):
        self.config = config
        self._sessions = db.session_factory(config)
        self._index: FaissIndex | None = None
        self._index_lock = threading.Lock()  # web server threads share one collection

    # -- sessions -----------------------------------------------------------------
    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session that commits on success and rolls back on error."""
        session = self._sessions()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    # -- the collection's model ----------------------------------------------------
    @property
    def stored_model_spec(self) -> str | None:
        with self.session() as s:
            row = s.get(Setting, MODEL_KEY)
            return row.value if row else None

    @cached_property
    def model_spec(self) -> str:
        """The spec in force: an explicit ``config.model``, else the collection's, else the default."""
        return self.config.model or self.stored_model_spec or DEFAULT_MODEL

    @cached_property
    def encoder(self) -> Encoder:
        return load_encoder(self.model_spec, self.config.device)

    def model_record(self, session: Session, create: bool = True) -> Model | None:
        """The catalog row of the model in force; created (loading the encoder) when asked."""
        model = session.scalar(select(Model).where(Model.spec == self.model_spec))
        if model is None and create:
            enc = self.encoder
            model = Model(spec=self.model_spec, dim=enc.dim, preprocess=enc.preprocess_info,
                          logit_scale=enc.logit_scale)
            session.add(model)
            session.flush()
        return model

    def adopt_model(self) -> int:
        """Make the model in force the collection's model; returns its catalog id."""
        with self.session() as s:
            model = self.model_record(s)
            row = s.get(Setting, MODEL_KEY)
            if row is None:
                s.add(Setting(key=MODEL_KEY, value=self.model_spec))
            else:
                row.value = self.model_spec
            return model.id

    @property
    def model_id(self) -> int | None:
        with self.session() as s:
            model = self.model_record(s, create=False)
            return model.id if model else None

    def require_model_id(self) -> int:
        model_id = self.model_id
        if model_id is None:
            raise CatalogError(
                f"no images are embedded with model '{self.model_spec}' yet; run: manage.py index PATH")
        return model_id

    # -- stored vectors ------------------------------------------------------------
    def _present(self, model_id: int, *columns):
        return (select(*columns).join(Image, Image.id == Embedding.image_id)
                .where(Embedding.model_id == model_id, Image.status == "ok").order_by(Embedding.image_id))

    def stored_ids(self, model_id: int | None = None) -> np.ndarray:
        """Ids ``[N]`` of the present images that have a vector for the model; no vectors are read."""
        model_id = model_id or self.require_model_id()
        with self.session() as s:
            return np.fromiter(s.scalars(self._present(model_id, Embedding.image_id)), dtype=np.int64)

    def vectors(self, image_ids: Sequence[int] | None = None, model_id: int | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
        """Stored vectors of the model in force: (ids ``[N]`` int64, vectors ``[N, D]`` float32).

        Only images whose file is still present; ``image_ids`` restricts to those ids.
        """
        model_id = model_id or self.require_model_id()
        query = self._present(model_id, Embedding.image_id, Embedding.vector)
        with self.session() as s:
            if image_ids is None:
                rows = s.execute(query).all()
            else:  # in chunks: SQLite caps the number of bound parameters
                wanted = list(map(int, image_ids))
                rows = [r for start in range(0, len(wanted), 10_000) for r in s.execute(
                    query.where(Embedding.image_id.in_(wanted[start:start + 10_000]))).all()]
        if not rows:
            return np.zeros(0, np.int64), np.zeros((0, self.encoder_dim(model_id)), np.float32)
        return _decode(rows)

    def vector_chunks(self, model_id: int | None = None, chunk_rows: int = 50_000
                      ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Like :meth:`vectors` for every present image, ``chunk_rows`` at a time, so memory stays bounded.

        Keyset paging (``image_id > last``) avoids both OFFSET scans and huge ``IN`` lists.
        """
        model_id = model_id or self.require_model_id()
        last = -1
        while True:
            with self.session() as s:
                rows = s.execute(self._present(model_id, Embedding.image_id, Embedding.vector)
                                 .where(Embedding.image_id > last).limit(chunk_rows)).all()
            if not rows:
                return
            ids, vecs = _decode(rows)
            yield ids, vecs
            last = int(ids[-1])

    def encoder_dim(self, model_id: int) -> int:
        with self.session() as s:
            return s.get(Model, model_id).dim

    def embedded_count(self, model_id: int | None = None) -> int:
        model_id = model_id or self.model_id
        if model_id is None:
            return 0
        with self.session() as s:
            return s.scalar(select(func.count()).select_from(Embedding).where(Embedding.model_id == model_id))

    # -- text vectors, cached per model ----------------------------------------------
    def text_vectors(self, texts: Sequence[str]) -> np.ndarray:
        """Unit vectors ``[N, D]`` for ``texts``; each text is encoded at most once per model."""
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.encoder.dim), np.float32)
        keys = [hashlib.sha256(t.encode()).hexdigest() for t in texts]
        with self.session() as s:
            model_id = self.model_record(s).id
            found: dict[str, bytes] = {}
            unique = list(dict.fromkeys(keys))
            for start in range(0, len(unique), 500):
                chunk = unique[start:start + 500]
                found.update(s.execute(select(PromptEmbedding.text_hash, PromptEmbedding.vector).where(
                    PromptEmbedding.model_id == model_id, PromptEmbedding.text_hash.in_(chunk))).all())
            missing = {k: t for k, t in zip(keys, texts) if k not in found}
            if missing:
                vecs = self.encoder.encode_texts(list(missing.values()))
                for (key, text), vec in zip(missing.items(), vecs):
                    s.add(PromptEmbedding(model_id=model_id, text_hash=key, text=text, vector=vec.tobytes()))
                    found[key] = vec.tobytes()
        return np.stack([np.frombuffer(found[k], dtype=np.float32) for k in keys])

    # -- the index -------------------------------------------------------------------
    def index_path(self, model_id: int) -> Path:
        return self.config.index_dir / f"model-{model_id}.faiss"

    @property
    def index(self) -> FaissIndex:
        """The model's FAISS index, loaded and brought in line with the catalog's vectors."""
        if self._index is None:
            with self._index_lock:
                if self._index is None:
                    self._index = self.sync_index()
        return self._index

    def sync_index(self, rebuild: bool = False) -> FaissIndex:
        """Load the index and add or remove whatever differs from the stored vectors.

        Only ids are compared; vectors are read for the ids the index lacks (all of them when
        the file is missing, unreadable or rebuilt).
        """
        model_id = self.require_model_id()
        path = self.index_path(model_id)
        dim = self.encoder_dim(model_id)
        index = None
        if path.exists() and not rebuild:
            try:
                index = FaissIndex.load(path, gpu=self.config.index_gpu)
            except Exception:
                index = None  # unreadable: rebuilt from the stored vectors below
            if index is not None and index.dim != dim:
                index = None
        if index is None:
            index = FaissIndex(dim, self.config.index_factory, self.config.index_gpu)
            for ids, vecs in self.vector_chunks(model_id):
                index.add(ids, vecs)
            index.save(path)
        else:
            ids, have = self.stored_ids(model_id), index.ids()
            extra, missing = np.setdiff1d(have, ids), np.setdiff1d(ids, have)
            if len(extra) or len(missing):
                index.remove(extra)
                index.add(*self.vectors(missing, model_id=model_id))
                index.save(path)
        self._index = index
        return index

    def save_index(self) -> None:
        if self._index is not None:
            self._index.save(self.index_path(self.require_model_id()))


def _decode(rows) -> tuple[np.ndarray, np.ndarray]:
    """``(image_id, vector bytes)`` rows → (ids ``[N]`` int64, vectors ``[N, D]`` float32)."""
    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    return ids, np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), -1)
