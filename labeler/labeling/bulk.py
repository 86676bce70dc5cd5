"""Bulk auto-labeling: score every embedded image against every group of a prompt set.

The maths is :mod:`labeler.core.scoring` on whole chunks of stored vectors; the writes are bulk
inserts and bulk updates that compare before writing, so a rerun changes nothing and a label a
human reviewed is never touched.
"""

from __future__ import annotations

import gc
import hashlib
import json
import threading
import time
from collections import Counter, deque
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import dataclass, field
from itertools import repeat
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
from sqlalchemy import Numeric, case, cast, delete, func, literal_column, or_, select
from sqlalchemy import column as sa_column, table as sa_table
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from ..store import db, label_totals, queue_indexes, sqlite_writer
from . import queue_order
from ..review import duplicate_marks
from ..core import fewshot, scoring, stored_scores
from ..store.catalog import Embedding, Fit, Image, Label, Model, PromptSetRecord, Setting, REVIEWED_ONLY, utcnow
from ..collection import Collection
from ..errors import LabelerError, NotFound
from ..core.prompts import Group, PromptSet, PromptSetError

# On the demo world (manage.py evaluate) it gives the most confidence on the truth and the lowest ECE.
DEFAULT_STRATEGY = "mean-embedding"
CHUNK_ROWS = 50_000


@dataclass(frozen=True)
class EncodedGroup:
    """A group's prompts as vectors: prompts stored option by option."""

    group: Group
    prompt_texts: list[str]
    prompt_vecs: np.ndarray  # [P, D]
    owner: np.ndarray  # [P] option index of each prompt
    weights: np.ndarray  # [P]
    baseline_vecs: np.ndarray  # [O, D]
    option_thresholds: np.ndarray  # [O], NaN where the option has none

    @property
    def option_names(self) -> list[str]:
        return self.group.option_names

    def scores(self, strategy: str, image_vecs: np.ndarray) -> np.ndarray:
        """Raw per-option cosines ``[N, O]``."""
        return scoring.option_scores(strategy, image_vecs, self.prompt_vecs, self.owner, self.weights,
                                     self.baseline_vecs)

    def decide(self, strategy: str, image_vecs: np.ndarray, logit_scale: float
               ) -> tuple[np.ndarray, np.ndarray, scoring.Decision]:
        """(cosines ``[N, O]``, confidence ``[N, O]``, decision) for ``image_vecs`` ``[N, D]``."""
        cosines = self.scores(strategy, image_vecs)
        confidence = scoring.softmax_confidence(cosines, logit_scale)
        decision = scoring.decide(confidence, self.option_thresholds, self.group.none_threshold)
        return cosines, confidence, decision

    def answer(self, choice: int) -> str | None:
        return None if choice == scoring.NONE else self.option_names[choice]

    def answer_key(self, choice: int) -> str:
        """The name an answer is counted under; none of these counts under the group's none name."""
        if choice == scoring.NONE:
            return self.group.none_name or "none"
        return self.option_names[choice]


def check_request(prompt_set: PromptSet, strategy: str, groups: Sequence[str] | None) -> list[str]:
    """The groups to label; raises before anything touches the catalog."""
    if strategy not in scoring.STRATEGIES:
        raise LabelerError(f"unknown strategy '{strategy}' (known: {', '.join(scoring.STRATEGIES)})")
    names = list(groups) if groups else list(prompt_set.groups)
    missing = [g for g in names if g not in prompt_set.groups]
    if missing:
        raise PromptSetError([f"{prompt_set.path}: groups: no group '{g}' (have: {', '.join(prompt_set.groups)})"
                              for g in missing])
    return list(dict.fromkeys(names))


def check_prompt_lengths(prompt_set: PromptSet, limit: int) -> None:
    """Refuse (:class:`PromptSetError`, every offender named) prompts longer than ``limit``
    characters (``LABELER_MAX_PROMPT_CHARS``): CLIP reads only a prompt's first 77 tokens, and a
    30 KB prompt cost ``label`` 38 s."""
    problems = [f"{prompt_set.path}: groups.{group.name}.options.{option.name}: a prompt of {len(p.text):,} "
                f"characters; the limit is {limit:,} (LABELER_MAX_PROMPT_CHARS)"
                for group in prompt_set.groups.values() for option in group.options for p in option.prompts
                if len(p.text) > limit]
    if problems:
        raise PromptSetError(problems)


def encode_groups(collection: Collection, prompt_set: PromptSet, groups: Sequence[str] | None = None,
                  session: Session | None = None) -> dict[str, EncodedGroup]:
    """Every prompt of the chosen groups as vectors, through the collection's per-model text cache
    (in ``session`` when given, else in a unit of work of its own)."""
    check_prompt_lengths(prompt_set, collection.config.max_prompt_chars)
    names = list(groups) if groups else list(prompt_set.groups)
    texts: list[str] = []
    for name in names:
        group = prompt_set.groups[name]
        texts += [p.text for o in group.options for p in o.prompts]
        texts += [group.baseline_prompt(o) for o in group.options]
    unique = list(dict.fromkeys(texts))
    with nullcontext(session) if session is not None else collection.session() as s:
        vectors = dict(zip(unique, collection.vectors.text_vectors(s, unique)))
    encoded = {}
    for name in names:
        group = prompt_set.groups[name]
        prompt_texts = [p.text for o in group.options for p in o.prompts]
        encoded[name] = EncodedGroup(
            group=group,
            prompt_texts=prompt_texts,
            prompt_vecs=np.stack([vectors[t] for t in prompt_texts]),
            owner=np.array([i for i, o in enumerate(group.options) for _ in o.prompts], np.int64),
            weights=np.array([p.weight for o in group.options for p in o.prompts], np.float32),
            baseline_vecs=np.stack([vectors[group.baseline_prompt(o)] for o in group.options]),
            option_thresholds=np.array([np.nan if o.threshold is None else o.threshold
                                        for o in group.options], np.float64),
        )
    return encoded


def logit_scale(collection: Collection, session: Session | None = None) -> float:
    """The model's logit scale, from the catalog (so labeling needs no weights once prompts are cached)."""
    with nullcontext(session) if session is not None else collection.session() as s:
        return float(s.get(Model, collection.models.require_id(s)).logit_scale)


def record_prompt_set(session: Session, prompt_set: PromptSet) -> int:
    """The catalog row of this exact prompt set content; created on first use."""
    row = session.scalar(select(PromptSetRecord).where(PromptSetRecord.name == prompt_set.name,
                                                       PromptSetRecord.content_hash == prompt_set.content_hash))
    if row is None:
        row = PromptSetRecord(name=prompt_set.name, version=prompt_set.version,
                              content_hash=prompt_set.content_hash, source=prompt_set.source,
                              path=prompt_set.path)
        session.add(row)
        session.flush()
    return row.id


@dataclass
class LabelReport:
    labeled: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    kept_reviewed: int = 0
    images: int = 0
    groups: dict[str, Counter] = field(default_factory=dict)
    seconds: float = 0.0
    strategy: str = ""
    prompt_set: dict = field(default_factory=dict)
    methods: dict[str, dict] = field(default_factory=dict)  # {group: {"strategy", "fit_id"}}
    skipped_duplicates: int = 0  # images marked as duplicates, left unlabeled (issue 26)
    rebuilt_indexes: list[str] = field(default_factory=list)  # queue indexes set aside and built again
    ranked_ahead: list[str] = field(default_factory=list)  # groups whose new rows came with their rank
    ranks_moved: int = 0  # labels whose "most informative" rank the pass after the writes rewrote

    def to_dict(self) -> dict:
        return {"labeled": self.labeled, "kept_reviewed": self.kept_reviewed,
                "groups": {g: dict(sorted(c.items())) for g, c in self.groups.items()},
                "inserted": self.inserted, "updated": self.updated, "unchanged": self.unchanged,
                "images": self.images, "strategy": self.strategy, "prompt_set": self.prompt_set,
                "methods": self.methods, "skipped_duplicates": self.skipped_duplicates,
                "rebuilt_indexes": self.rebuilt_indexes, "ranked_ahead": self.ranked_ahead,
                "ranks_moved": self.ranks_moved, "seconds": round(self.seconds, 3)}


def current_fit(session: Session, model_id: int, group: str, prompt_set_id: int) -> Fit | None:
    """The fit a group proposes with: its newest for this model and this exact prompt-set version."""
    return session.scalar(select(Fit).where(Fit.model_id == model_id, Fit.group == group,
                                            Fit.prompt_set_id == prompt_set_id)
                          .order_by(Fit.id.desc()).limit(1))


FIT_PREFIX = "fit:"  # a label's strategy when a fit from reviews proposed it: "fit:<method>"


def cosine_strategy(label_strategy: str | None) -> str:
    """The zero-shot strategy whose prompt cosines explain a label: a fit keeps the default's."""
    if not label_strategy or label_strategy.startswith(FIT_PREFIX):
        return DEFAULT_STRATEGY
    return label_strategy


@dataclass(frozen=True)
class Proposer:
    """How one group proposes: a zero-shot strategy, or a fit learned from its reviews."""

    strategy: str  # a zero-shot strategy, or "fit:<method>"
    fit_id: int | None = None
    classifier: fewshot.Classifier | None = None

    def decide(self, group: EncodedGroup, image_vecs: np.ndarray, logit_scale: float
               ) -> tuple[np.ndarray, np.ndarray, scoring.Decision]:
        """(cosines ``[N, O]``, confidence ``[N, O]``, decision); cosines stay the prompts' own."""
        if self.classifier is None:
            return group.decide(self.strategy, image_vecs, logit_scale)
        cosines = group.scores(DEFAULT_STRATEGY, image_vecs)
        confidence = self.classifier.confidence(image_vecs)
        return cosines, confidence, scoring.decide(confidence, group.option_thresholds, group.group.none_threshold)


def proposers(session: Session, model_id: int, prompt_set_id: int, names: Sequence[str],
              strategy: str | None) -> dict[str, Proposer]:
    """A named ``strategy`` forces zero-shot; None uses each group's fit where it has one."""
    out = {}
    for name in names:
        fit = None if strategy else current_fit(session, model_id, name, prompt_set_id)
        out[name] = (Proposer(f"{FIT_PREFIX}{fit.method}", fit.id, fewshot.Classifier.from_bytes(fit.method, fit.classifier))
                     if fit is not None else Proposer(strategy or DEFAULT_STRATEGY))
    return out


COLD_START_SAMPLE = 20_000


def cold_start_priority(collection: Collection, session: Session, model_id: int,
                        encoded: dict[str, EncodedGroup], groups: Sequence[str]) -> dict[str, dict[int, int]]:
    """``{group: {image_id: rank}}``: for groups nobody reviewed yet, typical images to review first.

    Two k-means clusters per option over a sample of the collection; the most typical image of
    each goes to the front of the "most informative" queue (see :func:`fewshot.typical_representatives`).
    """
    if not groups:
        return {}
    ids = collection.vectors.ids(session, model_id)
    if len(ids) > COLD_START_SAMPLE:
        ids = np.sort(np.random.default_rng(0).choice(ids, COLD_START_SAMPLE, replace=False))
    ids, vecs = collection.vectors.read(session, ids, model_id=model_id)
    out, by_k = {}, {}  # the clustering depends on k alone: groups with as many options share it
    for name in groups:
        k = 2 * len(encoded[name].option_names)
        if k not in by_k:
            by_k[k] = fewshot.typical_representatives(vecs, k, seed=0)
        out[name] = {int(ids[r]): rank for rank, r in enumerate(by_k[k])}
    return out


def stored_priority(session: Session, groups: Sequence[str], prompt_set_id: int) -> dict[str, dict[int, int]]:
    """``{group: {image_id: rank}}`` an earlier run chose for these groups with this prompt-set version.

    Kept rather than clustered again: the k-means would be paid on every rerun, and the front of
    a cold-start queue should not jump about as images are added.
    """
    out = {}
    for group in groups:
        raw = session.scalar(select(Setting.value).where(Setting.key == _RANKS_PREFIX + _group_key(group)))
        stored = json.loads(raw) if raw is not None else None
        if stored is not None and stored["prompt_set_id"] == prompt_set_id:
            out[group] = {int(image_id): rank for image_id, rank in stored["ranks"]}
    return out


def remember_priority(session: Session, ranks: dict[str, dict[int, int]], prompt_set_id: int) -> None:
    for group, by_image in ranks.items():
        value = json.dumps({"group": group, "prompt_set_id": prompt_set_id, "ranks": sorted(by_image.items())})
        session.merge(Setting(key=_RANKS_PREFIX + _group_key(group), value=value))


def label_collection(collection: Collection, prompt_set: PromptSet, strategy: str | None = None,
                     groups: Sequence[str] | None = None, chunk_rows: int = CHUNK_ROWS,
                     progress=None, recheck: bool = False, stage=None) -> LabelReport:
    """Write one proposed ``Label`` per embedded image and group; reviewed labels are kept.

    ``strategy`` None: each group proposes with what it learned from its reviews (``manage.py
    learn``) when it has a fit for this prompt-set version, else with :data:`DEFAULT_STRATEGY`;
    a named strategy forces that zero-shot strategy. ``progress(n)`` is called with the number
    of images finished in each chunk. ``stage(name, total)``, when given, is called as each pass
    over the images starts (``progress`` then counts from 0 of ``total`` again) and before the
    finishing step (``total`` None): a first run's scoring pass, then the labeling pass, then the
    queue order and indexes (tens of seconds at a million images). A run with nothing to relabel
    names no stage.

    Only proposals that changed are written. A group whose inputs are as they were at its last
    full run is skipped without reading a vector; ``recheck`` compares its rows anyway.

    Steps: :func:`plan_run` (one unit of work: what each group proposes with, which groups are
    stale), :func:`start_run` (one: forget their stamps, keep their review order), then
    :func:`propose_and_write` (one read per chunk), then :func:`finish_run` (one: the new stamps).
    """
    started = time.perf_counter()
    names = check_request(prompt_set, strategy or DEFAULT_STRATEGY, groups)
    report = LabelReport(groups={g: Counter() for g in names}, strategy=strategy or DEFAULT_STRATEGY)
    run = plan_run(collection, prompt_set, strategy, names, recheck, report)
    if not run.todo:
        report.skipped_duplicates = len(run.skip)
        report.images = run.embeddings[0] - len(run.skip)
        if progress is not None:
            progress(report.images)
    else:
        start_run(collection, run)
        if run.unlabeled and run.writer.dialect in RANK_AHEAD_DIALECTS:
            if stage is not None:
                stage("scoring ahead", run.embeddings[0])
            run.ranked = rank_ahead(collection, run, chunk_rows, progress if stage is not None else None)
            report.ranked_ahead = sorted(run.ranked)
        if stage is not None:
            stage("labeling", run.embeddings[0])
        propose_and_write(collection, run, report, chunk_rows, progress)
        if stage is not None:
            stage("queue order and indexes", None)
        finish_run(collection, run, report)
    report.seconds = time.perf_counter() - started
    return report


@dataclass
class LabelRun:
    """What one run of :func:`label_collection` proposes with, decided before any vector is read."""

    model_id: int
    prompt_set_id: int
    encoded: dict[str, EncodedGroup]
    scale: float
    how: dict[str, Proposer]
    embeddings: list[int]  # [count, highest id, sum of ids] of the images labeled
    stamps: dict[str, dict]  # each group's inputs (see run_stamp)
    todo: list[str]  # the groups whose stamp changed (or all, with recheck)
    writer: LabelWriter
    priority: dict[str, dict[int, int]]  # cold-start review order of unreviewed groups
    fresh_ranks: dict[str, dict[int, int]]  # the part of it chosen by this run
    skip: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # [M] marked duplicates, sorted
    unlabeled: list[str] = field(default_factory=list)  # the groups of todo without a label yet
    # {group: (image ids [N] sorted, "most informative" rank [N])}, found before the rows are written
    ranked: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)


def plan_run(collection: Collection, prompt_set: PromptSet, strategy: str | None, names: list[str],
             recheck: bool, report: LabelReport) -> LabelRun:
    """The run's inputs, in one unit of work: the prompts' vectors, each group's proposer and stamp,
    the groups to relabel, and the review order of the unreviewed ones. Fills ``report``'s
    ``methods`` and ``prompt_set``, and the counts of the groups that are up to date."""
    with collection.session() as s:
        model_id = collection.models.require_id(s)
        encoded = encode_groups(collection, prompt_set, names, session=s)
        scale = logit_scale(collection, s)
        prompt_set_id = record_prompt_set(s, prompt_set)
        how = proposers(s, model_id, prompt_set_id, names, strategy)
        reviewed = set(s.scalars(select(Label.group).where(Label.group.in_(names), REVIEWED_ONLY).distinct()))
        # a mark or unmark moves the stamp, so each group labels (or leaves) the image it concerns
        embeddings = embedded_images(s, model_id) + duplicate_marks.summary(s)
        skip = np.array(sorted(duplicate_marks.marked(s)), dtype=np.int64)
        stamps = {name: run_stamp(s, model_id, scale, prompt_set_id, how[name], name, embeddings) for name in names}
        todo = [name for name in names if recheck or not _still_fresh(s, name, stamps[name], report)]
        unreviewed = [g for g in todo if g not in reviewed]
        priority = stored_priority(s, unreviewed, prompt_set_id)
        fresh = cold_start_priority(collection, s, model_id, encoded, [g for g in unreviewed if g not in priority])
        writer = LabelWriter(s.get_bind().dialect)
        unlabeled = [g for g in todo if s.scalar(select(Label.id).where(Label.group == g).limit(1)) is None]
    report.methods = {name: {"strategy": p.strategy, "fit_id": p.fit_id} for name, p in how.items()}
    report.prompt_set = {"id": prompt_set_id, "name": prompt_set.name, "version": prompt_set.version,
                         "content_hash": prompt_set.content_hash}
    return LabelRun(model_id, prompt_set_id, encoded, scale, how, embeddings, stamps, todo, writer,
                    {**priority, **fresh}, fresh, skip, unlabeled)


def start_run(collection: Collection, run: LabelRun) -> None:
    """Forget the stamps of the groups about to relabel (a run that stops half way must not leave
    a group looking up to date), and keep the review order chosen now, in one write."""
    with collection.session() as s:
        for name in run.todo:
            s.execute(delete(Setting).where(Setting.key == _stamp_key(name)))
        remember_priority(s, run.fresh_ranks, run.prompt_set_id)


def propose(run: LabelRun, ids: np.ndarray, vecs: np.ndarray, groups: Sequence[str] | None = None
            ) -> dict[str, Proposal]:
    """Each stale group's (or ``groups``') proposals for a chunk: image ``ids`` ``[N]`` with vectors
    ``vecs`` ``[N, D]``."""
    proposals = {}
    for name in run.todo if groups is None else groups:
        cosines, confidence, decision = run.how[name].decide(run.encoded[name], vecs, run.scale)
        proposals[name] = Proposal.of(run.encoded[name], run.how[name], ids, cosines, confidence, decision,
                                      run.priority.get(name, {}))
    return proposals


# Where the first run of a group finds its "most informative" ranks before writing its rows (see
# rank_ahead). At 1,000,000 images × 9 groups on SQLite the scoring pass took 11.6 s and the rank
# pass after the writes, left with nothing to write, 36.1 s instead of 63.2 s (bench/bench_rank_ahead.py,
# which takes the dialects out to compare); on PostgreSQL the rank's UPDATE wrote a new version of
# every row.
RANK_AHEAD_DIALECTS = ("postgresql", "sqlite")
# PostgreSQL: chunks written at once, each by a thread on a connection of its own (the server does
# the work; the threads wait on it without the interpreter lock)
PG_WRITERS = 2


def _read_chunk(collection: Collection, session: Session, run: LabelRun, after: int, chunk_rows: int
                ) -> tuple[np.ndarray, np.ndarray, int, int] | None:
    """The next ``chunk_rows`` embedded images after image id ``after`` (keyset paging): ``(ids [N],
    vectors [N, D], how many marked duplicates were taken out, the last id read)``; None at the end."""
    ids, vecs = collection.vectors.read_after(session, run.model_id, after, chunk_rows)
    if not len(ids):
        return None
    last = int(ids[-1])
    if not len(run.skip):
        return ids, vecs, 0, last
    kept = ~np.isin(ids, run.skip)  # marked duplicates get no proposals
    return ids[kept], vecs[kept], int((~kept).sum()), last


def rank_ahead(collection: Collection, run: LabelRun, chunk_rows: int,
               progress=None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The "most informative" rank of every label the run will write for its groups that have no
    label yet: ``{group: (image ids [N] sorted, rank [N])}``, from a pass that scores every chunk
    and writes nothing. With it the rows are inserted with their rank, instead of writing every row
    a second time in the rank pass after the run (``queue_order.store_informative``), which then
    skips the group (``queue_order.stored_as_planned``). An image embedded or removed between the
    two passes fails that test, and the pass orders the group again. ``progress(n)``: the images
    of each chunk, as the labeling pass counts them."""
    parts: dict[str, list[tuple]] = {g: [] for g in run.unlabeled}
    codes: dict[str | None, int] = {None: -1}
    last = -1
    while True:
        with collection.session() as s:
            chunk = _read_chunk(collection, s, run, last, chunk_rows)
        if chunk is None:
            break
        ids, vecs, passed, last = chunk
        if progress is not None:
            progress(passed + len(ids))
        for name, proposal in propose(run, ids, vecs, run.unlabeled).items():
            predicted = np.array([codes.setdefault(v, len(codes)) for v in proposal.value.tolist()], np.int64)
            parts[name].append((ids, proposal.priority, proposal.margin, predicted))
    out = {}
    for name, chunks in parts.items():
        if chunks:
            ids, priority, margin, predicted = (np.concatenate(c) for c in zip(*chunks))
            out[name] = (ids, queue_order.ranks(ids, priority, margin, predicted))
    return out


def propose_and_write(collection: Collection, run: LabelRun, report: LabelReport, chunk_rows: int,
                      progress=None) -> None:
    """Score every present embedded image, ``chunk_rows`` at a time, and write what changed.

    Each chunk is read, scored and planned in one read unit of work (keyset paging on the image
    id), then handed to :class:`_Writes`, which writes it alongside the next ones where there are
    several.
    """
    writer = run.writer

    def finished(written: list[tuple[Batch, int]]) -> None:
        for batch, count in written:
            batch.settle(count, report)
            report.images += batch.images
            if progress is not None:
                progress(batch.images)

    with _no_cycle_collection(), _Writes(collection, writer, several=run.embeddings[0] > chunk_rows) as writes:
        last = -1
        first = True  # the first chunk tells whether this run rewrites most labels (queue_indexes)
        # rank_ahead's loop, but planned inside the unit of work and written after it closes: a
        # generator of chunks would hold it open (and set_aside's DROP uncommitted) across the write
        while True:
            with collection.session() as s:
                chunk = _read_chunk(collection, s, run, last, chunk_rows)
                if chunk is None:
                    break
                ids, vecs, passed, last = chunk
                if passed:
                    report.skipped_duplicates += passed
                    if progress is not None:
                        progress(passed)
                if not len(ids):
                    continue
                batch = writer.plan(s, ids, propose(run, ids, vecs), run.prompt_set_id, report, run.ranked)
                if first and queue_indexes.worth_setting_aside(
                        run.embeddings[0] * len(run.todo), len(batch.rows), batch.images * len(run.todo),
                        lambda: queue_indexes.rows_of_other_groups(s, run.todo)):
                    queue_indexes.set_aside(s)  # committed with this unit of work, before the writer writes
                first = False
            finished(writes.send(batch))
        finished(writes.drain())


class _Writes:
    """Where a run's chunks are written, each in a transaction of its own: in turn, here (one
    chunk); on SQLite by a process of its own while the next chunk is read, scored and planned here
    (see sqlite_writer); on PostgreSQL by :data:`PG_WRITERS` threads on connections of their own,
    so the server upserts one chunk while it receives the next and this thread scores a third.
    Chunks cover disjoint image ranges, so their writes never meet. :meth:`send` and :meth:`drain`
    return the chunks finished meanwhile, in order, with how many rows each wrote."""

    def __init__(self, collection: Collection, writer: "LabelWriter", several: bool):
        self.collection, self.writer = collection, writer
        self._stack = ExitStack()
        self._process = self._pool = None
        if several and writer.sqlite:
            self._process = self._stack.enter_context(
                sqlite_writer.WriterProcess(db.sqlite_path(collection.config), writer.sql))
        elif several:
            self._pool = self._stack.enter_context(ThreadPoolExecutor(PG_WRITERS, "labeler-label-writer"))
        self._ahead = 1 if self._process else PG_WRITERS if self._pool else 0  # chunks left in flight
        self._pending: deque[tuple[Batch, Callable[[], int]]] = deque()

    def __enter__(self) -> "_Writes":
        return self

    def __exit__(self, *exc) -> bool | None:
        return self._stack.__exit__(*exc)

    def send(self, batch: Batch) -> list[tuple[Batch, int]]:
        if self._process is not None:
            self._process.submit(batch.rows, batch.references)  # waits while it writes the one before
            self._pending.append((batch, self._process.result))
        elif self._pool is not None:
            self._pending.append((batch, self._pool.submit(self.writer.execute, self.collection, batch).result))
        else:
            self._pending.append((batch, lambda: self.writer.execute(self.collection, batch)))
        return self._finished(self._ahead)

    def drain(self) -> list[tuple[Batch, int]]:
        return self._finished(0)

    def _finished(self, left: int) -> list[tuple[Batch, int]]:
        done = []
        while len(self._pending) > left:
            batch, result = self._pending.popleft()
            done.append((batch, result()))
        return done


def finish_run(collection: Collection, run: LabelRun, report: LabelReport) -> None:
    """Store the relabeled groups' queue order (``queue_order``), build the queue indexes a run set
    aside (this one, or one that stopped half way), and stamp each group with the inputs it was
    labeled from, so an unchanged rerun skips it."""
    with collection.session() as s:
        # before the indexes: one sort each, not a write per row
        report.ranks_moved = queue_order.store_informative(s, [g for g in run.todo if g not in run.ranked])
        report.rebuilt_indexes = queue_indexes.restore(s)
        # after them: the test reads an index, not the table (0.07 s for 1,000,000 labels)
        astray = [name for name, (ids, _) in run.ranked.items() if not queue_order.stored_as_planned(s, name, len(ids))]
        report.ranks_moved += queue_order.store_informative(s, astray)
        for name in run.todo:
            _remember(s, name, run.stamps[name], report)
        db.analyze_after_bulk(s, report.inserted + report.updated, ("labels",))  # the queue's plans


@contextmanager
def _no_cycle_collection() -> Iterator[None]:
    """Python's cycle collector off while chunks are scored and written: each is hundreds of
    thousands of tuples and arrays that hold no cycles, and the collector kept walking them
    (1.4 of 27 s at 300,000 images). The switch is process-wide, so only a run on the main
    thread (the CLI) makes it: a web job labels in a thread of the server, whose requests keep
    their collector."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


# -- what a finished run proposed from -------------------------------------------------------
# A group whose inputs are all as they were when it was last labeled in full would get the same
# proposals again: its rerun reads nothing and writes nothing. Any change (prompt-set content,
# fit, strategy, model, the set of present embedded images, a review or undo) makes it relabel,
# comparing row by row and writing only what changed.

STAMP_VERSION = 1  # bump when the proposals' maths changes, so every group relabels once
_STAMP_PREFIX = "labeling.stamp:"
_RANKS_PREFIX = "labeling.cold-start:"


def _group_key(group: str) -> str:
    """A group's name as a short settings key (group names may be longer than a key)."""
    return hashlib.sha256(group.encode()).hexdigest()[:32]


def _stamp_key(group: str) -> str:
    return _STAMP_PREFIX + _group_key(group)


def embedded_images(session: Session, model_id: int) -> list[int]:
    """[count, highest id, sum of ids] of the present images with a vector: which images a run labels."""
    row = session.execute(select(func.count(), func.max(Embedding.image_id), func.sum(Embedding.image_id))
                          .join(Image, Image.id == Embedding.image_id)
                          .where(Embedding.model_id == model_id, Image.status == "ok")).one()
    return [int(v or 0) for v in row]


def run_stamp(session: Session, model_id: int, scale: float, prompt_set_id: int, proposer: Proposer,
              group: str, embeddings: list[int]) -> dict:
    """Everything one group's proposals depend on, as JSON-ready values."""
    reviewed = session.scalar(select(func.count()).select_from(Label)
                              .where(Label.group == group, REVIEWED_ONLY))
    return {"version": STAMP_VERSION, "group": group, "model_id": model_id, "logit_scale": scale,
            "prompt_set_id": prompt_set_id, "strategy": proposer.strategy, "fit_id": proposer.fit_id,
            "embeddings": embeddings, "reviewed": int(reviewed)}


def _label_count(session: Session, group: str) -> int:
    """The group's stored labels: rows deleted or added behind labeling's back make it relabel."""
    return session.scalar(select(func.count()).select_from(Label).where(Label.group == group))


def last_run_prompt_set_id(session: Session, group: str) -> int | None:
    """The prompt set of ``group``'s last complete ``label`` run, from its stamp (one keyed read).

    None when there is no stamp (never labeled, or a run that stopped half way: it forgets the
    stamp first). A complete run writes every proposal whose prompt set differs, so its proposals
    are the group's newest."""
    raw = session.scalar(select(Setting.value).where(Setting.key == _stamp_key(group)))
    if raw is None:
        return None
    found = (json.loads(raw).get("stamp") or {}).get("prompt_set_id")
    return None if found is None else int(found)


def _still_fresh(session: Session, group: str, stamp: dict, report: LabelReport) -> bool:
    """Whether ``group`` was last labeled from exactly ``stamp``; then its stored counts join ``report``."""
    raw = session.scalar(select(Setting.value).where(Setting.key == _stamp_key(group)))
    if raw is None:
        return False
    stored = json.loads(raw)
    if stored.get("stamp") != stamp or stored.get("labels") != _label_count(session, group):
        return False
    labeled = stored["labeled"]
    report.labeled += labeled
    report.unchanged += labeled
    report.kept_reviewed += stored["kept_reviewed"]
    report.groups[group].update(stored["counts"])
    return True


def _remember(session: Session, group: str, stamp: dict, report: LabelReport) -> None:
    counts = report.groups[group]
    value = json.dumps({"stamp": stamp, "labeled": sum(counts.values()), "counts": dict(counts),
                        "kept_reviewed": stamp["reviewed"], "labels": _label_count(session, group)})
    session.merge(Setting(key=_stamp_key(group), value=value))


@dataclass
class Proposal:
    """One group's proposal for a chunk of ``N`` images, as arrays."""

    group: EncodedGroup
    proposer: Proposer
    choice: np.ndarray  # [N] option index, NONE for none of these
    value: np.ndarray  # [N] object: the option's name, None for none of these
    confidence: np.ndarray  # [N] float64, rounded to CONFIDENCE_DIGITS
    margin: np.ndarray  # [N] float64, rounded to CONFIDENCE_DIGITS
    priority: np.ndarray  # [N] float64 cold-start rank, NaN for none
    cosines: np.ndarray  # [N, O]
    option_confidence: np.ndarray  # [N, O]

    @classmethod
    def of(cls, group: EncodedGroup, proposer: Proposer, ids: np.ndarray, cosines: np.ndarray,
           confidence: np.ndarray, decision: scoring.Decision, ranks: dict[int, int]) -> "Proposal":
        names = np.array([*group.option_names, None], dtype=object)  # NONE (-1) picks the last
        priority = np.full(len(ids), np.nan)
        if ranks:
            ranked = np.fromiter(ranks, np.int64, len(ranks))
            at = np.searchsorted(ids, ranked)
            hit = (at < len(ids)) & (ids[np.minimum(at, len(ids) - 1)] == ranked)
            priority[at[hit]] = np.fromiter(ranks.values(), np.float64, len(ranks))[hit]
        return cls(group, proposer, decision.choice, names[decision.choice],
                   np.round(decision.confidence.astype(np.float64), CONFIDENCE_DIGITS),
                   np.round(decision.margin.astype(np.float64), CONFIDENCE_DIGITS), priority, cosines, confidence)


CONFIDENCE_DIGITS = 6
# A proposal within this of the stored one is the same proposal: BLAS sums in another order for
# another chunk size, and last-bit noise is not a change worth a write.
TOLERANCE = 1e-4
_STAGE = "label_stage"  # PostgreSQL: the session's temporary table a chunk is COPYed into


def _quoted(column: str) -> str:
    return f'"{column}"' if column == "group" else column


# What a proposal writes; status, reviewer and version belong to the review.
_WRITTEN = ("value", "predicted", "confidence", "margin", "strategy", "fit_id", "priority", "option_scores",
            "prompt_set_id", "updated_at")
# What an insert writes besides: a first run's rank, where it is known ahead (rank_ahead). An
# update leaves the rank to the pass after the run, which writes only the ranks that moved.
_INSERTED = (*_WRITTEN, "informative_rank")
_READ = ("image_id", "group", "status", "value", "confidence", "margin", "strategy", "fit_id", "priority",
         "prompt_set_id")


@dataclass
class Batch:
    """One chunk's writes, planned (compared and counted) apart from being written."""

    images: int
    rows: list[tuple]  # values in LabelWriter.keys order, rows sorted as the unique index
    prompt_set_id: int
    # what the rows refer to, for the reference check: each image written, the proposers' fits
    image_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    fit_ids: set[int] = field(default_factory=set)
    # every row inserts a label no image had when the chunk was planned (a first run's chunk)
    fresh: bool = False

    @property
    def references(self) -> sqlite_writer.References:
        return [("images", self.image_ids.tolist()), ("prompt_sets", [self.prompt_set_id]),
                ("fits", sorted(self.fit_ids))]

    def settle(self, written: int, report: LabelReport) -> None:
        """Correct ``report`` for rows the upsert did not write: reviewed since the plan, the review won."""
        lost = len(self.rows) - written
        if lost > 0:
            report.updated -= lost
            report.labeled -= lost
            report.kept_reviewed += lost


class LabelWriter:
    """Writes proposals in bulk: one ``INSERT ... ON CONFLICT DO UPDATE`` per chunk, only for rows
    whose proposal changed, and never over a label a human reviewed (the upsert itself checks
    ``status = 'proposed'``, so a review made while labeling runs wins)."""

    def __init__(self, dialect):
        table = Label.__table__
        insert_of = postgresql_insert if dialect.name == "postgresql" else sqlite_insert
        # the constants are in the SQL, not bound again for every row
        proposed, one = literal_column("'proposed'"), literal_column("1")
        statement = insert_of(table).values(status=proposed, version=one)
        new = statement.excluded

        def shown(column):  # a confidence as the review pages show it
            if dialect.name == "postgresql":  # its two-argument round takes a numeric
                column = cast(column, Numeric)
            return func.round(column, literal_column(str(scoring.SHOWN_DIGITS)))

        # The version moves only when what a reviewer sees moved: the value, or the confidence at the
        # digits the card shows. A refit that keeps every proposal leaves open review pages valid.
        # An ``auto`` label (manage.py accept) is planned for a write only when its answer changed;
        # then it is a proposal again, no longer its run's.
        seen_changed = or_(table.c.value.is_distinct_from(new.value),
                           shown(table.c.confidence).is_distinct_from(shown(new.confidence)))
        conflict = dict(
            index_elements=[table.c.image_id, table.c.group],
            set_={**{c: new[c] for c in _WRITTEN},
                  "version": case((seen_changed, table.c.version + one), else_=table.c.version),
                  "status": proposed, "accept_run_id": literal_column("NULL"), "reviewed_at": literal_column("NULL")},
            where=table.c.status.in_([proposed, literal_column("'auto'")]))
        self.statement = statement.on_conflict_do_update(**conflict)
        columns = ["image_id", "group", *_INSERTED]
        if dialect.name == "postgresql":
            # PostgreSQL: each chunk is COPYed into a temporary table, then one INSERT ... SELECT
            # with the same ON CONFLICT clause (its bulk-load path; executemany sent a statement per row)
            stage = sa_table(_STAGE, *(sa_column(c) for c in columns))
            staged = insert_of(table).from_select(
                [*columns, "status", "version"], select(*(stage.c[c] for c in columns), proposed, one))
            self.staged_sql = str(staged.on_conflict_do_update(**conflict).compile(dialect=dialect))
            self.stage_sql = (f"CREATE TEMPORARY TABLE IF NOT EXISTS {_STAGE} AS SELECT "
                              f"{', '.join(_quoted(c) for c in columns)} FROM labels WITH NO DATA")
            self.copy_sql = f"COPY {_STAGE} ({', '.join(_quoted(c) for c in columns)}) FROM STDIN"
            self.direct_sql = f"COPY labels ({', '.join(_quoted(c) for c in columns)}, status, version) FROM STDIN"
        self.compiled = self.statement.compile(dialect=dialect, column_keys=columns)
        self.dialect = dialect.name
        self.sqlite = dialect.name == "sqlite"
        self.sql = str(self.compiled)
        self.positional = bool(self.compiled.positional)
        # the columns in the order the driver takes them
        self.keys = list(self.compiled.positiontup) if self.positional else columns
        # how updated_at reaches the driver (on SQLite: seconds since 1970), applied once per chunk
        self.stamp = table.c.updated_at.type.bind_processor(dialect)

    def plan(self, session: Session, ids: np.ndarray, proposals: dict[str, Proposal], prompt_set_id: int,
             report: LabelReport, ranked: dict[str, tuple[np.ndarray, np.ndarray]] | None = None) -> "Batch":
        """Compare the chunk's ``proposals`` with the stored labels of images ``ids`` ``[N]``: the rows
        to write, counted into ``report`` as if every write lands (:meth:`Batch.settle` corrects it).
        ``ranked``: the ranks a new row of a group is inserted with (:func:`rank_ahead`)."""
        table = Label.__table__
        # by the image range alone: with a group filter too, SQLite took a group index and read every
        # label of those groups on every chunk (quadratic: 49 of 146 s at 1M images)
        stored = session.execute(select(*(table.c[c] for c in _READ))
                                 .where(table.c.image_id.between(int(ids[0]), int(ids[-1])))).all()
        # numpy columns, not Row objects: numpy probes each Row for array protocols, slowly
        columns = [np.array(c, dtype=object) for c in zip(*stored)] if stored else None
        now = utcnow().replace(microsecond=0)
        # the driver takes plain values (see execute): updated_at converted once, not once per row
        stamp = self.stamp(now) if self.sqlite and self.stamp else now
        rows: list[tuple] = []
        # each row's (image position, group rank): the unique index's order, sorted with numpy
        positions: list[np.ndarray] = []
        ranks: list[np.ndarray] = []
        fresh = True
        rank = {name: r for r, name in enumerate(sorted(proposals))}
        for name, proposal in proposals.items():
            mine = None if columns is None else [c[columns[1] == name] for c in columns]
            write, reviewed, exists = _changes(ids, proposal, mine, prompt_set_id)
            labeled = ~reviewed
            counts = report.groups[name]
            group = proposal.group
            for choice, n in zip(*np.unique(proposal.choice[labeled], return_counts=True)):
                counts[group.answer_key(int(choice))] += int(n)
            report.labeled += int(labeled.sum())
            report.kept_reviewed += int(reviewed.sum())
            report.inserted += int((write & ~exists).sum())
            report.updated += int((write & exists).sum())
            report.unchanged += int((labeled & ~write).sum())
            at = np.flatnonzero(write)
            if len(at) == 0:
                continue
            fresh = fresh and not exists[at].any()
            value = proposal.value[at].tolist()
            priority: list[int | None] = [None] * len(at)
            for k in np.flatnonzero(~np.isnan(proposal.priority[at])).tolist():
                priority[k] = int(proposal.priority[at[k]])
            given = {"image_id": ids[at].tolist(), "group": repeat(name), "value": value, "predicted": value,
                     "confidence": proposal.confidence[at].tolist(), "margin": proposal.margin[at].tolist(),
                     "strategy": repeat(proposal.proposer.strategy), "fit_id": repeat(proposal.proposer.fit_id),
                     "priority": priority, "option_scores": stored_scores.encode(proposal.cosines[at],
                                                                                  proposal.option_confidence[at]),
                     "prompt_set_id": repeat(prompt_set_id), "updated_at": repeat(stamp),
                     "informative_rank": _ranks_of(ids[at], (ranked or {}).get(name))}
            rows += zip(*(given[key] for key in self.keys))
            positions.append(at)
            ranks.append(np.full(len(at), rank[name]))
        batch = Batch(images=len(ids), rows=rows, prompt_set_id=prompt_set_id, fresh=fresh)
        if rows:
            order = np.lexsort((np.concatenate(ranks), np.concatenate(positions)))
            batch.rows = [rows[i] for i in order.tolist()]
            batch.image_ids = ids[np.unique(np.concatenate(positions))]
            batch.fit_ids = {p.proposer.fit_id for p in proposals.values() if p.proposer.fit_id is not None}
        return batch

    def execute(self, collection: Collection, batch: "Batch") -> int:
        """Write ``batch``'s rows here; returns how many the upsert wrote (a reviewed label is not)."""
        if not batch.rows:
            return 0
        if not self.sqlite:
            with collection.session() as s:
                written = self._write_postgresql(s, batch.rows, batch.fresh)
                if written:
                    label_totals.bump(s)
                return written
        # SQLite: the statement SQLAlchemy compiled, run straight on the driver with plain tuples
        # (per-row parameter processing was most of the old cost); the rows come in the unique
        # index's order, so its pages fill one after another instead of being split all over. The
        # foreign keys are checked once per parent instead of twice per row by SQLite.
        with db.unchecked_references(collection.config) as raw:
            return sqlite_writer.write_batch(raw, self.sql, batch.rows, batch.references)

    def _write_postgresql(self, session: Session, rows: list[tuple], fresh: bool = False) -> int:
        """``rows`` COPYed into the session's temporary table, then one upsert from it; a driver
        without psycopg 3's COPY runs the same upsert row by row. Returns how many it wrote.

        ``fresh`` rows (no label of theirs existed when they were planned) are COPYed straight into
        ``labels``: at 100,000 images × 9 groups 6.2 s against the upsert's 9.7 s. A label someone
        else inserted since breaks the unique index; the COPY then rolls back to its savepoint and
        the rows take the upsert, which leaves a reviewed label alone."""
        cursor = session.connection().connection.driver_connection.cursor()  # in this transaction
        try:
            if not hasattr(cursor, "copy"):
                result = session.connection().execute(self.statement, [dict(zip(self.keys, r)) for r in rows])
                return result.rowcount if result.rowcount is not None and result.rowcount >= 0 else len(rows)
            if fresh and self._copied(cursor, rows):
                return len(rows)
            cursor.execute(self.stage_sql)
            cursor.execute(f"TRUNCATE {_STAGE}")
            with cursor.copy(self.copy_sql) as copy:
                for row in rows:
                    copy.write_row(row)
            cursor.execute(self.staged_sql)
            return cursor.rowcount if cursor.rowcount is not None and cursor.rowcount >= 0 else len(rows)
        finally:
            cursor.close()

    def _copied(self, cursor, rows: list[tuple]) -> bool:
        """COPY new ``rows`` straight into ``labels``; False (nothing written) if one already exists."""
        from psycopg.errors import UniqueViolation  # lazy: PostgreSQL only

        cursor.execute("SAVEPOINT label_copy")
        try:
            with cursor.copy(self.direct_sql) as copy:
                for row in rows:
                    copy.write_row((*row, "proposed", 1))
        except UniqueViolation:
            cursor.execute("ROLLBACK TO SAVEPOINT label_copy")
            return False
        cursor.execute("RELEASE SAVEPOINT label_copy")
        return True


def _ranks_of(ids: np.ndarray, ranked: tuple[np.ndarray, np.ndarray] | None) -> Iterable[int | None]:
    """The rank found ahead for each of image ``ids`` ``[N]`` (None where it was not)."""
    if ranked is None:
        return repeat(None)
    known, rank = ranked
    at = np.minimum(np.searchsorted(known, ids), len(known) - 1)
    hit = known[at] == ids
    values = rank[at].tolist()
    return values if hit.all() else [v if h else None for v, h in zip(values, hit.tolist())]


def _changes(ids: np.ndarray, proposal: Proposal, stored: list[np.ndarray] | None, prompt_set_id: int
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(write, reviewed, exists), each ``[N]`` bool, for one group's ``stored`` columns (``_READ`` order)."""
    n = len(ids)
    write, reviewed, exists = np.ones(n, bool), np.zeros(n, bool), np.zeros(n, bool)
    if stored is None or len(stored[0]) == 0:
        return write, reviewed, exists
    image_ids = stored[0].astype(np.int64)
    at = np.searchsorted(ids, image_ids)
    keep = (at < n) & (ids[np.minimum(at, n - 1)] == image_ids)  # a stored row of an image not read: not ours
    stored, at = [c[keep] for c in stored], at[keep]
    exists[at] = True
    # an auto label whose answer is unchanged stays auto: it counts as kept, like a reviewed one
    is_reviewed = (stored[2] != "proposed") & ((stored[2] != "auto") | (stored[3] == proposal.value[at]))
    reviewed[at[is_reviewed]] = True
    old, at = [c[~is_reviewed] for c in stored], at[~is_reviewed]
    who = proposal.proposer
    same = (old[6] == who.strategy) & (old[7] == who.fit_id) & (old[9] == prompt_set_id) & (old[3] == proposal.value[at])
    same &= _close(old[4], proposal.confidence[at]) & _close(old[5], proposal.margin[at])
    old_priority = np.array(old[8], dtype=np.float64)  # None -> NaN
    new_priority = proposal.priority[at]
    same &= (old_priority == new_priority) | (np.isnan(old_priority) & np.isnan(new_priority))
    write[at] = ~same
    write[reviewed] = False
    return write, reviewed, exists


def _close(old: np.ndarray, new: np.ndarray) -> np.ndarray:
    """Element-wise: stored ``old`` (object, maybe None) within :data:`TOLERANCE` of ``new``."""
    return np.abs(np.array(old, dtype=np.float64) - new) <= TOLERANCE


def explain(collection: Collection, image_id: int, prompt_set: PromptSet, strategy: str = DEFAULT_STRATEGY,
            groups: Sequence[str] | None = None) -> dict:
    """Why an image got its labels: per group → option → per-prompt cosines, plus the option scores.

    Returns ``{group: {"answer", "confidence", "margin", "strategy", "options": {option:
    {"cosine", "confidence", "baseline": {"text", "cosine"}, "prompts": [{"text", "weight", "cosine"}]}}}}``.
    """
    names = check_request(prompt_set, strategy, groups)
    with collection.session() as s:
        ids, vecs = collection.vectors.read(s, [image_id])
        if len(ids) == 0:
            raise NotFound(f"image {image_id} has no stored vector for model '{collection.models.spec(s)}'")
        encoded = encode_groups(collection, prompt_set, names, session=s)
        scale = logit_scale(collection, s)
    out = {}
    for name in names:
        group = encoded[name]
        cosines, confidence, decision = group.decide(strategy, vecs, scale)
        per_prompt = scoring.prompt_cosines(vecs, group.prompt_vecs)[0]
        baseline = scoring.prompt_cosines(vecs, group.baseline_vecs)[0]
        options = {}
        for o, option in enumerate(group.group.options):
            rows = np.flatnonzero(group.owner == o)
            options[option.name] = {
                "cosine": float(cosines[0, o]), "confidence": float(confidence[0, o]),
                "baseline": {"text": group.group.baseline_prompt(option), "cosine": float(baseline[o])},
                "prompts": [{"text": group.prompt_texts[p], "weight": float(group.weights[p]),
                             "cosine": float(per_prompt[p])} for p in rows],
            }
        choice = int(decision.choice[0])
        out[name] = {"answer": group.answer(choice), "confidence": float(decision.confidence[0]),
                     "margin": float(decision.margin[0]), "strategy": strategy, "options": options}
    return out
