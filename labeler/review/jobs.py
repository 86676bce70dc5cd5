"""Jobs: long work started from the web, run in a background thread with its progress in ``jobs``.

A request only inserts the row and starts the thread, so it returns at once; the page polls the
row. The thread writes the status (queued → running → done | failed), ``done`` of ``total``
steps with a one-line message, and at the end the result. A failure is recorded as one line (a
:class:`LabelerError`'s text, else the exception's type and text) and never leaves the thread.

While a job is active its ``result`` holds its owner (``host:pid:token``) and its parameters
(``params``, which stay in the result once it ends). A job whose owner process is gone (a server
killed mid-job) is marked failed the next time jobs are read.

One job runs per collection at a time, whatever its kind: two at once would relabel the same
labels under each other.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
import uuid
from dataclasses import dataclass
from typing import Any, Callable

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..labeling import prompt_lab as lab, learning, prompt_search
from . import decisions as review
from . import trust
from ..store.catalog import Job, utcnow
from ..collection import Collection
from ..errors import LabelerError, NotFound
from ..core import fewshot
from ..labeling.bulk import CHUNK_ROWS, label_collection

LEARN_AND_RELABEL = "learn-and-relabel"
LABEL = "label"
ACCEPT = "accept"
SUGGEST_PROMPTS = "suggest-prompts"
ACTIVE = ("queued", "running")
STOPPED = "the server stopped before the job finished"
MAX_MESSAGE = 500

log = logging.getLogger(__name__)


class JobError(LabelerError):
    """A job that cannot be started as asked (an unknown kind)."""


# Owner tokens of the jobs this process is running; a job of this host and pid that is not
# here was left behind by an earlier server with the same pid (a container restart).
_running: set[str] = set()
_start_lock = threading.Lock()  # check-then-insert: two clicks at once start one job


def job_dict(job: Job) -> dict:
    """A job as the API shows it; ``result`` only once it has finished."""
    finished = job.status not in ACTIVE
    stored = job.result if isinstance(job.result, dict) else {}
    return {"id": job.id, "kind": job.kind, "status": job.status, "done": job.done, "total": job.total,
            "message": job.message, "result": job.result if finished else None, "user_id": job.user_id,
            "params": stored.get("params") or {}, "active": not finished,
            "created_at": job.created_at.isoformat(timespec="seconds"),
            "finished_at": job.finished_at.isoformat(timespec="seconds") if job.finished_at else None}


def one_line(exc: BaseException) -> str:
    """What a failed job says: a user error's own text, else the exception's type and text."""
    text = str(exc) if isinstance(exc, LabelerError) else f"{type(exc).__name__}: {exc}"
    text = " ".join(text.split())
    return text if len(text) <= MAX_MESSAGE else text[:MAX_MESSAGE - 1] + "…"


def _orphaned(job: Job) -> bool:
    owner = (job.result or {}).get("owner") if isinstance(job.result, dict) else None
    if not owner:
        return True  # active without an owner: never started by a live thread
    if owner in _running:
        return False
    host, pid, _ = owner.split(":", 2)
    if host != socket.gethostname():
        return False  # another machine's job; it cannot be checked from here
    if int(pid) == os.getpid():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False  # alive, owned by another user
    return False


def recover(session: Session) -> int:
    """Mark active jobs whose server process is gone as failed; returns how many."""
    stale = [job for job in session.scalars(select(Job).where(Job.status.in_(ACTIVE))) if _orphaned(job)]
    for job in stale:
        params = (job.result or {}).get("params") if isinstance(job.result, dict) else None
        job.status, job.message, job.result, job.finished_at = "failed", STOPPED, _kept(params), utcnow()
    session.flush()
    return len(stale)


def get(session: Session, job_id: int) -> Job:
    recover(session)
    job = session.get(Job, job_id)
    if job is None:
        raise NotFound(f"no job {job_id}")
    return job


def latest(session: Session, kind: str) -> Job | None:
    """The newest job of ``kind``, active or not."""
    recover(session)
    return session.scalar(select(Job).where(Job.kind == kind).order_by(Job.id.desc()).limit(1))


def latest_with(session: Session, kind: str, params: dict, look_back: int = 50) -> Job | None:
    """The newest of the last ``look_back`` jobs of ``kind`` started with exactly ``params`` (the
    prompt lab's suggestions for one set and group); filtered here, so any database will do."""
    recover(session)
    for job in session.scalars(select(Job).where(Job.kind == kind).order_by(Job.id.desc()).limit(look_back)):
        stored = job.result if isinstance(job.result, dict) else {}
        if stored.get("params") == params:
            return job
    return None


def active(session: Session) -> Job | None:
    """The collection's running (or queued) job of any kind, if there is one."""
    recover(session)
    return session.scalar(select(Job).where(Job.status.in_(ACTIVE)).order_by(Job.id).limit(1))


def _kept(params: dict | None) -> dict | None:
    return {"params": params} if params else None


def start(collection: Collection, kind: str, user_id: int | None = None,
          params: dict[str, Any] | None = None) -> tuple[dict, bool]:
    """Start a ``kind`` job with ``params`` in a background thread; (its dict, True) at once.

    Only one job runs per collection: while one of any kind is active, (that job, False).
    """
    spec = KINDS.get(kind)
    if spec is None:
        raise JobError(f"unknown job kind '{kind}' (known: {', '.join(KINDS)})")
    params = dict(params or {})
    missing = [name for name in spec.required if not params.get(name)]
    unknown = sorted(set(params) - set(spec.required) - set(spec.optional))
    if missing or unknown:
        raise JobError(f"a '{kind}' job needs {', '.join(spec.required) or 'no parameters'}"
                       + (f" (missing: {', '.join(missing)})" if missing else "")
                       + (f" (unknown: {', '.join(unknown)})" if unknown else ""))
    owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex}"
    with _start_lock:
        with collection.session() as s:
            running = active(s)
            if running is not None:
                return job_dict(running), False
            job = Job(kind=kind, status="queued", done=0, user_id=user_id, message="waiting to start",
                      result={"owner": owner, "params": params})
            s.add(job)
            s.flush()
            _running.add(owner)
            created = job_dict(job)
    thread = threading.Thread(target=_run, args=(collection, job.id, owner, spec.work, params),
                              name=f"labeler-job-{job.id}", daemon=True)
    thread.start()
    return created, True


class Progress:
    """The running job's row, written as work advances: ``advance(n, message)``."""

    def __init__(self, collection: Collection, job_id: int):
        self.collection = collection
        self.job_id = job_id
        self.done = 0
        self.total: int | None = None

    def set(self, done: int | None = None, total: int | None = None, message: str | None = None) -> None:
        self.done = self.done if done is None else done
        self.total = self.total if total is None else total
        with self.collection.session() as s:
            job = s.get(Job, self.job_id)
            job.done, job.total = self.done, self.total
            if message is not None:
                job.message = message

    def advance(self, n: int, message: str | None = None) -> None:
        self.set(self.done + n, message=message)


Work = Callable[[Collection, "Progress", dict], tuple[dict, str]]


def _run(collection: Collection, job_id: int, owner: str, work: Work, params: dict) -> None:
    try:
        with collection.session() as s:
            job = s.get(Job, job_id)
            job.status, job.message = "running", "starting"
        result, message = work(collection, Progress(collection, job_id), params)
        _finish(collection, job_id, "done", message, {**result, "params": params} if params else result)
    except Exception as exc:  # a failed job must never take the server down
        if not isinstance(exc, LabelerError):
            log.exception("job %s failed", job_id)
        try:
            _finish(collection, job_id, "failed", one_line(exc), _kept(params))
        except Exception:
            log.exception("job %s: could not record its failure", job_id)
    finally:
        _running.discard(owner)


def _finish(collection: Collection, job_id: int, status: str, message: str, result: dict | None) -> None:
    with collection.session() as s:
        job = s.get(Job, job_id)
        job.status, job.message, job.result, job.finished_at = status, message, result, utcnow()
        if status == "done" and job.total is not None:
            job.done = job.total


# -- kinds -------------------------------------------------------------------------------------

def learn_and_relabel(collection: Collection, progress: Progress, params: dict) -> tuple[dict, str]:
    """``learning.learn`` over every group, then ``label_collection`` with each group's prompt set.

    Steps, so the bar moves with the work: ``fewshot.FOLDS + 1`` per group learned (one per
    cross-validation fold, one for the final fit), then one per chunk of images relabeled per
    prompt set (two passes for a set with a group that has no label yet: it is scored ahead), and
    the finishing step (the queue order and indexes) named in the message. Returns (``{"learn":
    {group: report}, "relabel": [label report, ...]}``, a one-line summary).
    """
    with collection.session() as s:
        model_id = collection.models.require_id(s)
        images = collection.vectors.count(s, model_id)
        names = review.groups(s)
        by_set: dict[str, tuple] = {}  # content hash → (prompt set, its groups)
        for name in names:
            prompt_set = learning.prompt_set_of_labels(s, name)
            if prompt_set is not None:
                by_set.setdefault(prompt_set.content_hash, (prompt_set, []))[1].append(name)
    per_group = fewshot.FOLDS + 1
    chunks = max(1, math.ceil(images / CHUNK_ROWS))
    learn_steps = len(names) * per_group
    progress.set(0, learn_steps + chunks * len(by_set), f"learning from reviews: 0 of {len(names)} groups")
    learned = 0

    def fold_done(group: str, done: int, folds: int) -> None:
        # A group dealt into fewer folds than FOLDS still fills its share of the bar.
        progress.set(learned * per_group + (done * fewshot.FOLDS) // folds,
                     message=f"learning from reviews: {group}, fold {done} of {folds} "
                             f"({learned} of {len(names)} groups done)")

    def group_done(n: int) -> None:
        nonlocal learned
        learned += n
        progress.set(learned * per_group, message=f"learning from reviews: {learned} of {len(names)} groups")

    report = learning.learn(collection, progress=group_done, fold_progress=fold_done)
    progress.set(learn_steps)  # groups with one option report no progress
    relabeled = []
    for prompt_set, groups in by_set.values():
        where = f"relabeling with {prompt_set.name} v{prompt_set.version}"
        step = {"name": "", "seen": 0, "passes": 1}

        def images_done(n: int, where: str = where, step: dict = step) -> None:
            step["seen"] += n
            progress.advance(1, f"{where}: {step['name']}{step['seen']} of {images} images")

        def stage(name: str, total: int | None, where: str = where, step: dict = step) -> None:
            if name == "scoring ahead":  # a group with no label yet is scored ahead: a pass more
                step["passes"] += 1
                progress.set(total=progress.total + chunks)
            step.update(name="" if name == "labeling" else f"{name}, ", seen=0)
            progress.set(message=f"{where}: {name}" if total is None else f"{where}: {step['name']}0 of {images} images")

        start = progress.done
        progress.set(message=f"{where}: 0 of {images} images")
        relabeled.append(label_collection(collection, prompt_set, None, groups, progress=images_done,
                                          stage=stage).to_dict())
        progress.set(start + chunks * step["passes"])  # however many chunks the run took, its share is done
    fitted = sum(1 for entry in report.values() if entry.get("method") not in (None, "zero-shot"))
    changed = sum(r["updated"] + r["inserted"] for r in relabeled)
    kept = sum(r["kept_reviewed"] for r in relabeled)
    summary = (f"learned {fitted} of {len(report)} groups from reviews (the rest kept zero-shot); "
               f"relabeled {images} images: {changed} labels changed, {kept} reviewed kept")
    return {"learn": report, "relabel": relabeled}, summary


def label(collection: Collection, progress: Progress, params: dict) -> tuple[dict, str]:
    """``label_collection`` with the prompt set on offer under ``params["prompt_set"]`` (the lab's
    saved version first) and ``params["strategy"]`` (absent: each group's fit, else the default).

    Steps: one per image and pass: a first run scores every image ahead of the labeling pass, and
    the bar then covers both, never going back; the finishing step (the queue order and indexes,
    tens of seconds at a million images) is named in the message. Returns (the label report plus
    the prompt set's name and version and the strategy, the one-line summary the lab shows).
    """
    prompt_set, _ = lab.open_prompt_set(collection.config.home, params["prompt_set"])
    strategy = params.get("strategy") or None
    with collection.session() as s:
        images = collection.vectors.count(s, collection.models.require_id(s))
    where = f"labeling with {prompt_set.name} v{prompt_set.version}"
    progress.set(0, images, f"{where}: 0 of {images} images")
    step = {"name": "labeling", "start": 0}

    def stage(name: str, total: int | None) -> None:
        if name == "scoring ahead":  # a pass before the labeling one: the bar covers both
            progress.set(total=progress.done + total + images)
        step.update(name=name, start=progress.done)
        progress.set(message=f"{where}: {name}" if total is None else counted(0))

    def counted(seen: int) -> str:
        named = "" if step["name"] == "labeling" else f"{step['name']}, "
        return f"{where}: {named}{seen} of {images} images"

    def images_done(n: int) -> None:
        progress.advance(n, counted(progress.done + n - step["start"]))

    report = label_collection(collection, prompt_set, strategy, progress=images_done, stage=stage)
    summary = (f"Labeled with {prompt_set.name} v{prompt_set.version} ({strategy or 'each group’s fit'}): "
               f"{report.labeled} labels, {report.updated} changed, {report.kept_reviewed} reviewed kept.")
    return {**report.to_dict(), "prompt_set": prompt_set.name, "version": prompt_set.version,
            "strategy": strategy}, summary


def accept(collection: Collection, progress: Progress, params: dict) -> tuple[dict, str]:
    """``manage.py accept`` of ``params["group"]`` at ``params["min_precision"]`` (default 0.99).

    Steps: estimating, then writing. A refusal fails the job with its one line (how many more
    random reviews it needs)."""
    group = str(params["group"])
    try:
        target = float(params.get("min_precision", 0.99))
    except (TypeError, ValueError):
        raise trust.AcceptError("min_precision must be a number, e.g. 0.99") from None
    progress.set(0, None, f"accepting {group} at {target}: estimating the precision from random reviews")
    report = trust.accept(collection, group, target, progress=lambda done, total: progress.set(
        done, total, f"accepting {group} at {target}: {done} of {total} labels written"))
    progress.set(message=f"accepted {report['accepted']} {group} labels")
    return report, (f"Accepted {report['accepted']} {group} labels ({100 * report['coverage']:.1f}% of the unreviewed) "
                    f"at a stated precision of {report['lower_bound']:.4f} (run {report['run']}).")


def suggest_prompts(collection: Collection, progress: Progress, params: dict) -> tuple[dict, str]:
    """The prompt lab's "Suggest prompts from reviews": ``prompt_search.suggest`` for
    ``params["group"]`` of the prompt set on offer under ``params["prompt_set"]``; writes nothing.

    Steps: the candidates, each cross-validation fold, the final search. Returns (the suggestion
    report plus the set's name, version and content hash ``base``, which adopting checks; a
    one-line summary)."""
    prompt_set, _ = lab.open_prompt_set(collection.config.home, params["prompt_set"])
    group = str(params["group"])
    report = prompt_search.suggest(collection, prompt_set, group,
                                   progress=lambda done, total, message: progress.set(done, total, message))
    cv = report["cv_accuracy"]
    changed = sum(1 for entry in report["options"].values() if entry["changed"])
    summary = (f"Suggested prompts for {changed} of {len(report['options'])} {group} options from "
               f"{report['reviews']} reviews: cross-validated accuracy {cv['before']:.1%} → {cv['after']:.1%}"
               + ("" if report["better"] else " (not surely better on held-out reviews)") + ".")
    return {**report, "prompt_set": params["prompt_set"], "version": prompt_set.version,
            "base": prompt_set.content_hash}, summary


@dataclass(frozen=True)
class JobKind:
    """What a kind of job runs, and the parameters it takes (``required`` must be non-empty)."""

    work: Work
    required: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()


KINDS: dict[str, JobKind] = {
    LEARN_AND_RELABEL: JobKind(learn_and_relabel),
    LABEL: JobKind(label, required=("prompt_set",), optional=("strategy",)),
    ACCEPT: JobKind(accept, required=("group",), optional=("min_precision",)),
    SUGGEST_PROMPTS: JobKind(suggest_prompts, required=("prompt_set", "group")),
}
