"""The index keeper: the model's FAISS index file, loaded once and kept in step with the catalog.

The catalog's vectors are the truth, and database triggers log every change to the set of
indexable vectors in ``index_changes`` (a vector stored or replaced, an image gone or back).
An index file is stamped with the last change it holds, so opening it reads the header, loads
the file and replays only newer changes: O(changes), never a scan of every id. The same log is
what makes saving cheap: nothing is lost between saves (a ``kill -9`` costs a replay, not
vectors), so an index is saved only once the changes since its last save reach a quarter of its
size (and at least ``checkpoint_every``), which keeps the cost of saving O(1) per image.

Which FAISS index: ``config.index_factory`` (:func:`labeler.vectors.index.choose_factory`): ``auto`` is
exact ``Flat`` until ``config.index_ivf_above`` vectors, then IVF trained on a sample of the stored
vectors with ``nlist`` ≈ 4·sqrt(N) and ``nprobe`` tuned to a measured recall@10 of 0.97 (:func:`tune_nprobe`); a writer's
checkpoint switches to IVF at the threshold and retrains when the collection has grown
:data:`RETRAIN_GROWTH`-fold. Searching never rebuilds.

Another process may add or remove vectors while a server holds the index: :meth:`IndexKeeper.get`
looks at the newest change id at most every :data:`REFRESH_S` seconds and replays what is new.
"""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path
from typing import Callable

import numpy as np
from sqlalchemy import Integer, String, cast, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..store.catalog import Model, Setting
from ..config import Config
from ..errors import CatalogError
from .index import IVF_TRAIN_PER_LIST, FaissIndex, check_factory, choose_factory, read_stamp
from .model_registry import ModelRegistry
from .vector_index import VectorIndex
from .vector_store import VectorStore


GENERATION_KEY = "index_generation"
REFRESH_S = 1.0  # how stale a server's index may be; one small query per interval
SAVE_FRACTION = 0.25  # save once the unsaved changes reach this share of the index
RETRAIN_GROWTH = 4  # an IVF index is retrained once the collection has grown this many times over
RECALL_TARGET = 0.97  # nprobe is tuned to this recall@10 on stored vectors, a margin over 0.95
RECALL_QUERIES = 64
TEXT_COSINE = 0.3  # a text query's cosine with its best image under CLIP (the modality gap)
NPROBE_MIN = 8
# PostgreSQL hands out sequence numbers before commit, so a change may appear below one already
# seen; its readers look this far back (replays are idempotent). SQLite commits writers in order.
PG_REREAD = 1000


def read_generation(session: Session) -> int:
    """The catalog's index generation: 0 until vectors are first written."""
    value = session.scalar(select(Setting.value).where(Setting.key == GENERATION_KEY))
    return int(value) if value is not None else 0


def bump_generation(session: Session) -> None:
    """Note that the set of stored (present) vectors changed (kept for callers; the change log
    written by triggers is what open indexes follow)."""
    # One UPDATE, atomic in the database: two writers never both read n and write n + 1.
    bump = (update(Setting).where(Setting.key == GENERATION_KEY)
            .values(value=cast(cast(Setting.value, Integer) + 1, String)))
    if session.execute(bump).rowcount:
        return
    try:
        with session.begin_nested():
            session.add(Setting(key=GENERATION_KEY, value="1"))
    except IntegrityError:  # another writer inserted it first
        session.execute(bump)


class IndexKeeper:
    """``IndexKeeper(config, models, vectors)``: load, catch up, save or rebuild the index of the model in force.

    It keeps the index in step with the catalog (it is not a cache: the file is only ever a
    replay of the catalog's change log). Every method that reads the catalog takes the caller's
    ``session``; one operation (a search, a batch of writes, a rebuild) is one unit of work.

    The FAISS type and GPU use come from ``config.index_factory`` and ``config.index_gpu``.
    ``last_replay`` counts what the last catch-up read and did, ``saves`` and ``saved_vectors``
    what this object wrote, for tests and benchmarks.
    """

    def __init__(self, config: Config, models: ModelRegistry, vectors: VectorStore):
        self.config = config
        self.models = models
        self.vectors = vectors
        self._index: VectorIndex | None = None
        self._lock = threading.RLock()  # web server threads share one collection
        self._checked_at = 0.0
        self._unsaved = 0  # changes applied since the file was last written
        self.last_replay = {"changes": 0, "added": 0, "removed": 0}
        self.saves = self.saved_vectors = 0
        self._model_id: int | None = None

    def _model(self, session: Session) -> int:
        """The model in force's catalog id, looked up once (a handle never switches models)."""
        if self._model_id is None:
            self._model_id = self.models.require_id(session)
        return self._model_id

    def _model_row(self, session: Session) -> str:
        """Which catalog's model row the index belongs to: its id and creation time. A catalog
        rebuilt (or restored) reuses ids, so a file stamped for another row is not replayed."""
        model = session.get(Model, self._model(session))
        return f"{model.id}@{model.created_at.isoformat()}"

    def path(self, model_id: int) -> Path:
        return self.config.index_dir / f"model-{model_id}.faiss"

    def generation(self, session: Session) -> int:
        return read_generation(session)

    # -- opening and following the catalog ----------------------------------------------------
    def get(self, session: Session) -> VectorIndex:
        """The model's index, opened on the first call of the process, then caught up with the
        catalog's change log at most every :data:`REFRESH_S` seconds.

        A catch-up changes the index in place under its write lock: searches wait for it, and
        never see half of it. A file rebuilt by another process (``reindex``) is loaded anew.
        """
        if self._index is None or time.monotonic() - self._checked_at >= REFRESH_S:
            with self._lock:
                if self._index is None:
                    self.open(session)
                elif time.monotonic() - self._checked_at >= REFRESH_S:
                    self._checked_at = time.monotonic()
                    model_id = self._model(session)
                    on_disk = read_stamp(self.path(model_id)) or {}
                    if on_disk.get("build") not in (None, self._index.stamp.get("build")):
                        self.open(session)
                    elif self.vectors.latest_change(session) > self._index.stamp.get("change", 0):
                        self.catch_up(session)
        return self._index

    def open(self, session: Session) -> VectorIndex:
        """Load the index file and replay the changes newer than its stamp; build it when the
        file is missing, unreadable or of another dimension. Saves when the replay was large."""
        with self._lock:
            self._checked_at = time.monotonic()
            model_id = self._model(session)
            path = self.path(model_id)
            index = None
            if path.exists():
                try:  # mapped: a read-only command never copies the file (2 GB at 1M of dim 512)
                    index = FaissIndex.load(path, gpu=self.config.index_gpu, mapped=True)
                except Exception:
                    index = None  # unreadable: rebuilt from the stored vectors below
                if index is not None and index.dim != self.models.dim(session, model_id):
                    index = None
            if index is not None and "change" in index.stamp and (
                    index.stamp.get("model_row") != self._model_row(session)
                    or index.stamp["change"] > self.vectors.latest_change(session)):
                index = None  # stamped for another catalog: its ids mean other images here
            if index is None:
                return self.rebuild(session)
            self._index, self._unsaved = index, 0
            if "change" not in index.stamp:
                self._adopt_unstamped(session, index)  # written before stamps: compared id by id, once
            else:
                self.catch_up(session)
            if self._unsaved and self._rebuild_due(index):
                # grown past the IVF threshold (or the retrain growth) by writes this process
                # replays rather than made (a bulk import, say): the type its size calls for, once
                return self.rebuild(session, index.stamp.get("spec"))
            if (self._unsaved and self._unsaved >= self._save_after()) or index.upgraded:
                self.save(session)  # an upgraded file is saved once, in the layout it now has
                index.upgraded = False
            return index

    def _adopt_unstamped(self, session: Session, index: VectorIndex) -> None:
        model_id = self._model(session)
        change = self.vectors.latest_change(session)
        ids, have = self.vectors.ids(session, model_id), index.ids()
        index.remove(np.setdiff1d(have, ids))
        index.add(*self.vectors.read(session, np.setdiff1d(ids, have), model_id=model_id))
        index.stamp = self._stamp(session, index, change, spec=self.config.index_factory, trained_at=len(index))
        self.save(session)

    def catch_up(self, session: Session, known: tuple[np.ndarray, np.ndarray] | None = None) -> int:
        """Replay the logged changes newer than the index's stamp; returns how many were read.

        Each touched image ends as the catalog has it now (present with a vector: in the index;
        else out), so a replay is idempotent. ``known``: (ids ``[K]``, vectors ``[K, D]``) just
        written by the caller, used instead of reading those vectors back.
        """
        with self._lock:
            index = self._index if self._index is not None else self.open(session)
            model_id = self._model(session)
            after = index.stamp.get("change", 0)
            if session.get_bind().dialect.name != "sqlite":
                after = max(0, after - PG_REREAD)
            latest = self.vectors.latest_change(session)  # before the read: a later change is in it
            changes, present_ids = self.vectors.changes_since(session, after, model_id)
            self.last_replay = {"changes": len(changes), "added": 0, "removed": 0}
            if not changes:
                # other models' changes (another mode's vectors) need no replay, ever again
                if latest > index.stamp.get("change", 0):
                    index.stamp = {**index.stamp, "change": latest}
                return 0
            touched = np.unique(np.fromiter((c[1] for c in changes), dtype=np.int64, count=len(changes)))
            replaced = np.isin(touched, [c[1] for c in changes if c[2] != "add"])
            present, held = np.isin(touched, present_ids), index.contains(touched)
            to_add = touched[present & (~held | replaced)]
            to_remove = touched[~present & held]
            ids, vecs = self._vectors_of(session, to_add, known, model_id)
            try:
                index.remove(to_remove)
                index.add(ids, vecs)
            except RuntimeError:  # HNSW cannot remove (nor replace): rebuilt from the catalog
                self.rebuild(session, index.stamp.get("spec"))
                return len(changes)
            index.stamp = {**index.stamp, "change": max(latest, *(c[0] for c in changes)), "count": len(index)}
            self.last_replay.update(added=len(ids), removed=len(to_remove))
            self._unsaved += len(ids) + len(to_remove)
            return len(changes)

    def _vectors_of(self, session: Session, ids: np.ndarray, known: tuple[np.ndarray, np.ndarray] | None,
                    model_id: int) -> tuple[np.ndarray, np.ndarray]:
        if known is None or not len(known[0]) or not len(ids):
            if not len(ids):
                return ids, np.zeros((0, 0), np.float32)
            return self.vectors.read(session, ids, model_id=model_id)
        known_ids = np.asarray(known[0], dtype=np.int64)
        order = np.argsort(known_ids)
        pos = np.searchsorted(known_ids, ids, sorter=order).clip(max=len(known_ids) - 1)
        hit = known_ids[order[pos]] == ids
        read_ids, read_vecs = (self.vectors.read(session, ids[~hit], model_id=model_id) if (~hit).any()
                               else (None, None))
        ids_out, vecs_out = ids[hit], np.asarray(known[1], dtype=np.float32)[order[pos[hit]]]
        if read_ids is not None and len(read_ids):
            ids_out, vecs_out = np.concatenate([ids_out, read_ids]), np.concatenate([vecs_out, read_vecs])
        return ids_out, vecs_out

    def sync(self, session: Session, rebuild: bool = False, save: bool = True) -> VectorIndex:
        """The index, caught up with the catalog (``rebuild``: built anew from the stored vectors).

        ``save``: write it back when it changed (a server following another process's writes
        passes False and leaves the file to that process).
        """
        with self._lock:
            if rebuild:
                return self.rebuild(session)
            index = self.get(session) if self._index is not None else self.open(session)
            self.catch_up(session)
            if save and self._unsaved:
                self.save(session)
            return index

    # -- writing ------------------------------------------------------------------------------
    def _save_after(self) -> int:
        """How many unsaved changes justify writing the whole file again."""
        size = len(self._index) if self._index is not None else 0
        return max(self.config.checkpoint_every, int(size * SAVE_FRACTION))

    def save(self, session: Session) -> None:
        with self._lock:
            if self._index is None:
                return
            stamp = {**self._index.stamp, "count": len(self._index), "generation": self.generation(session)}
            self._index.save(self.path(self._model(session)), stamp)
            self._unsaved = 0
            self.saves += 1
            self.saved_vectors += len(self._index)

    def checkpoint(self, session: Session, force: bool = False) -> str | None:
        """After a writer's batch: switch to IVF, retrain or save when due; returns what was done.

        ``force`` (the end of a run) saves whatever is unsaved.
        """
        with self._lock:
            index = self._index
            if index is None:
                return None
            if self._rebuild_due(index):
                self.rebuild(session, index.stamp.get("spec"))
                return "rebuilt"
            if self._unsaved and (force or self._unsaved >= self._save_after()):
                if index.kind == "ivf":  # the lists have filled since nprobe was chosen: choose again
                    tune_nprobe(index, self.vectors.sample(session, 2 * RECALL_QUERIES, self._model(session))[1])
                self.save(session)
                return "saved"
            return None

    def _rebuild_due(self, index: VectorIndex) -> bool:
        spec = index.stamp.get("spec", self.config.index_factory)
        wanted = choose_factory(spec, len(index), self.config.index_ivf_above)
        if wanted != "Flat" and index.kind == "flat":  # a placeholder until the IVF could be trained
            return len(index) >= _lists_needed(wanted)
        if index.kind == "ivf" and spec.strip().lower() in ("auto", "ivf"):
            return len(index) >= RETRAIN_GROWTH * max(1, index.stamp.get("trained_at", len(index)))
        return False

    def rebuild(self, session: Session, spec: str | None = None,
                progress: Callable[[int], None] | None = None) -> VectorIndex:
        """Build the index anew from the stored vectors and save it.

        ``spec``: ``auto``, ``flat``, ``ivf``, ``hnsw`` or a FAISS factory string (default the
        configured one); an IVF is trained on a random sample and its ``nprobe`` tuned to
        :data:`RECALL_TARGET`. ``progress(k)`` after every ``k`` vectors added.
        """
        spec = spec or self.config.index_factory
        check_factory(spec)
        with self._lock:
            model_id = self._model(session)
            change = self.vectors.latest_change(session)  # before reading: later changes are replayed after
            n = self.vectors.count_present(session, model_id)
            factory = choose_factory(spec, n, self.config.index_ivf_above)
            if factory != "Flat" and n < _lists_needed(factory):
                factory = "Flat"  # too few vectors to train on: exact until there are enough
            try:
                index = FaissIndex(self.models.dim(session, model_id), factory, self.config.index_gpu)
            except RuntimeError as exc:
                raise CatalogError(f"FAISS cannot build {factory!r}: {exc}") from None
            sample = None
            if not index.is_trained:
                nlist = index.nlist or _lists_needed(factory)
                _, sample = self.vectors.sample(session, nlist * IVF_TRAIN_PER_LIST, model_id)
                index.train(sample)
            for ids, vecs in self.vectors.chunks(session, model_id):
                index.add(ids, vecs)
                if progress:
                    progress(len(ids))
            if index.kind == "ivf":
                tune_nprobe(index, sample)
            index.stamp = self._stamp(session, index, change, spec=spec, trained_at=n)
            self._index, self._unsaved = index, 0
            self.catch_up(session)
            self.save(session)
            return index

    def _stamp(self, session: Session, index: VectorIndex, change: int, spec: str, trained_at: int) -> dict:
        return {"change": change, "count": len(index), "generation": self.generation(session), "spec": spec,
                "trained_at": trained_at, "build": uuid.uuid4().hex, "model_row": self._model_row(session)}

    # -- checking -----------------------------------------------------------------------------
    def describe(self, session: Session) -> dict:
        """The open index: ``type``, ``factory``, ``vectors``, ``nlist``/``nprobe`` for IVF, its ``stamp``."""
        index = self.get(session)
        return {**index.describe(), "stamp": {k: v for k, v in index.stamp.items() if k != "build"}}

    def recall(self, session: Session, queries: int = 50, k: int = 10, seed: int = 0) -> float | None:
        """Measured recall@``k`` of the index against an exact scan, with a random sample of
        stored vectors as queries; None for an empty index."""
        index = self.get(session)
        if len(index) == 0:
            return None
        _, sample = self.vectors.sample(session, queries, seed=seed)
        return measure_recall(index, sample, k)

    def problems(self, session: Session) -> list[str]:
        """Problems between the catalog's stored vectors and the index file; empty when consistent.

        A full comparison, id by id: ``check`` pays it on purpose; opening never does.
        """
        model_id = self.models.current_id(session)
        if model_id is None:
            return []
        ids, dim = self.vectors.ids(session, model_id), self.models.dim(session, model_id)
        path = self.path(model_id)
        if not path.exists():
            return [f"index file {path} is missing ({len(ids)} vectors in the catalog)"] if len(ids) else []
        try:
            index = FaissIndex.load(path)
        except Exception as exc:
            return [f"index file {path} is unreadable: {exc}"]
        problems = []
        if index.dim != dim:
            problems.append(f"index dimension {index.dim} != the model's {dim}")
        with self._lock:  # the file as this process would open it: saved state plus the logged changes
            held, unsaved, self._index = self._index, self._unsaved, index
            try:
                if "change" in index.stamp:
                    self.catch_up(session)
            finally:
                self._index, self._unsaved = held, unsaved
        have = index.ids()
        if len(np.unique(have)) != len(have):
            problems.append(f"index holds {len(have) - len(np.unique(have))} duplicate ids")
        extra = np.setdiff1d(have, ids)
        missing = np.setdiff1d(ids, have)
        if len(extra):
            problems.append(f"index holds {len(extra)} ids with no stored vector: {extra[:10].tolist()}")
        if len(missing):
            problems.append(f"{len(missing)} stored vectors are not in the index: {missing[:10].tolist()}")
        return problems


def _lists_needed(factory: str) -> int:
    """How many training vectors a factory string needs at least (its IVF list count; 0 for none)."""
    head = factory.split(",")[0].upper()
    if head.startswith("IVF"):
        digits = "".join(ch for ch in head[3:] if ch.isdigit()) or "0"
        return int(digits)
    return 0


def measure_recall(index: FaissIndex, queries: np.ndarray, k: int = 10,
                   truth: tuple[np.ndarray, np.ndarray] | None = None) -> float:
    """Mean share of the exact top ``k`` that the index's own search finds, over ``queries`` ``[Q, D]``.

    A hit tied with the exact ``k``-th score counts as found (equal vectors rank in any order).
    ``truth``: the exact (scores ``[Q, k]``, ids ``[Q, k]``) when already known.
    """
    if len(queries) == 0 or len(index) == 0:
        return 1.0
    true_scores, true_ids = truth if truth is not None else index.search(queries, k, exact=True)
    scores, ids = index.search(queries, k)
    shares = []
    for t_scores, t_ids, f_scores, f_ids in zip(true_scores, true_ids, scores, ids):
        wanted = int((t_ids >= 0).sum())
        if wanted == 0:
            continue
        floor = t_scores[wanted - 1] - 1e-5
        shares.append(min(wanted, int(((f_ids >= 0) & (f_scores >= floor)).sum())) / wanted)
    return float(np.mean(shares)) if shares else 1.0


def tune_nprobe(index: FaissIndex, sample: np.ndarray | None, k: int = 10) -> int:
    """An IVF ``nprobe``: twice the smallest power of two whose recall@``k`` reaches
    :data:`RECALL_TARGET` for queries near the images, and at least what queries as far from
    them as a text is reach (and :data:`NPROBE_MIN`; a few more lists cost microseconds).

    Near queries: stored vectors from ``sample`` ``[M, D]``, and midpoints of pairs of them
    (between clusters, where IVF is weakest). Far queries: each stored vector turned away to
    cosine :data:`TEXT_COSINE`, as a text query sits from its best image under CLIP; their
    neighbours spread over more lists (at 1M of dim 512, nprobe 64 found 0.94 of a text's top 10).
    """
    rng = np.random.default_rng(0)
    if sample is None or len(sample) == 0:
        return min(index.nlist, NPROBE_MIN)
    picks = sample[rng.choice(len(sample), min(RECALL_QUERIES, len(sample)), replace=False)]
    mids = _unit(picks + sample[rng.choice(len(sample), len(picks))])
    away = rng.standard_normal(picks.shape).astype(np.float32)
    away = _unit(away - (away * picks).sum(axis=1, keepdims=True) * picks)  # orthogonal to each pick
    far = _unit(TEXT_COSINE * picks + np.sqrt(1 - TEXT_COSINE ** 2) * away)
    near = np.concatenate([picks, mids]).astype(np.float32)
    truths = {name: index.search(queries, k, exact=True) for name, queries in (("near", near), ("far", far))}

    def reaches(nprobe: int, *names: str) -> bool:
        index.nprobe = nprobe  # the setter caps it at nlist
        queries = {"near": near, "far": far}
        return index.nprobe >= index.nlist or all(
            measure_recall(index, queries[name], k, truths[name]) >= RECALL_TARGET for name in names)

    def smallest(start: int, *names: str) -> int:
        nprobe = start
        while not reaches(nprobe, *names):  # recall need not grow with nprobe on tiny lists: check each
            nprobe *= 2
        return nprobe

    smallest(max(NPROBE_MIN, 2 * smallest(1, "near"), smallest(1, "far")), "near", "far")
    return index.nprobe


def _unit(x: np.ndarray) -> np.ndarray:
    """Rows of ``x`` ``[N, D]`` scaled to unit length, float32."""
    return (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)).astype(np.float32)
