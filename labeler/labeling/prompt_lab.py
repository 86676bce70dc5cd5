"""The prompt lab: the study's workflow as library functions, for the web page and the CLI alike.

Pick a prompt set, a group and an option; edit the option's prompts; preview its top matches,
the group's confidence histogram and each strategy's accuracy against known answers; save the
edit as a new version into ``<home>/prompt_sets/`` (never into the package). A bare name then
resolves to that saved version everywhere (:func:`labeler.core.prompts.resolve_prompt_set_path`).
Also :func:`explain_image`, per-prompt cosines for the image detail page.

No Flask here: every function takes the collection it works on.
"""

from __future__ import annotations

import fcntl
import hashlib
import threading
from pathlib import Path

import numpy as np
import yaml
from sqlalchemy import select

from . import evaluate, bulk as labeling
from ..store.catalog import Label, PromptSetRecord
from ..collection import Collection
from ..errors import LabelerError, NotFound
from ..files import write_atomically
from ..core.prompts import (MAX_BYTES, PROMPT_SET_DIR, PromptSet, PromptSetError, bump_version, home_prompt_set_dir,
                            load_prompt_set, parse_prompt_set, resolve_prompt_set_path)
from ..review.decisions import HISTOGRAM_BINS

TOP_MATCHES = 12
TRUTH_FILE = "truth.csv"
LOCK_FILE = ".save.lock"

_save_lock = threading.Lock()  # flock is per open file; threads of one server share this instead


class StalePromptSet(LabelerError):
    """A save based on a version of the prompt set that someone else has replaced meanwhile."""

    def __init__(self, name: str, current: PromptSet):
        self.current = current
        super().__init__(f"prompt set '{name}' was saved as version {current.version} by someone else after "
                         f"you opened it, so your edit was not saved; it is kept below: preview it against "
                         f"version {current.version} and save again to replace that option's prompts, or "
                         f"reload the lab to start from version {current.version}")


# -- prompt sets on offer ------------------------------------------------------------------

def prompt_set_files(home: Path) -> dict[str, Path]:
    """``{name: path}`` of every prompt set on offer, each resolved as the CLI resolves the name
    (the home's saved version wins over the shipped file)."""
    names: set[str] = set()
    for folder in (PROMPT_SET_DIR, home_prompt_set_dir(home)):
        if folder.is_dir():
            # templates.yaml is the shared template list, not a prompt set
            names.update(p.stem for p in folder.glob("*.yaml") if p.name != "templates.yaml")
    return {name: resolve_prompt_set_path(name, home) for name in sorted(names)}


def open_prompt_set(home: Path, name: str) -> tuple[PromptSet, Path]:
    """The prompt set on offer under ``name`` and its file; :class:`NotFound` when there is none."""
    files = prompt_set_files(home)
    if name not in files:
        raise NotFound(f"no prompt set '{name}' (have: {', '.join(files) or 'none'})")
    return load_prompt_set(files[name]), files[name]


def prompt_set_from_record(record: PromptSetRecord) -> PromptSet:
    """The prompt set exactly as it was when labels were made with it (from the catalog's copy)."""
    data = yaml.safe_load(record.source)
    return parse_prompt_set(data, record.path or record.name, record.source, record.content_hash)


# -- editing ------------------------------------------------------------------------------

def parse_prompt_lines(text: str) -> list[dict]:
    """One prompt a line, optionally ``WEIGHT | text``; blank lines are ignored."""
    prompts = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        weight_text, bar, rest = line.partition("|")
        if bar:
            try:
                weight = float(weight_text)
            except ValueError:
                raise PromptSetError([f"prompt line {line!r}: the part before | must be a weight"]) from None
            prompts.append({"text": rest.strip(), "weight": weight})
        else:
            prompts.append({"text": line})
    if not prompts:
        raise PromptSetError(["an option needs at least one prompt"])
    return prompts


def format_prompt_lines(prompt_set: PromptSet, group: str, option: str) -> str:
    """The option's prompts in the form :func:`parse_prompt_lines` reads back."""
    prompts = prompt_set.group(group).option(option).prompts
    return "\n".join(p.text if p.weight == 1.0 else f"{p.weight:g} | {p.text}" for p in prompts)


def edited_prompt_set(path: Path, group: str, option: str, lines: str) -> tuple[PromptSet, str]:
    """The prompt set at ``path`` with ``option``'s prompts replaced and its version bumped.

    The option gets ``templates: []`` so its ensemble is exactly what the lab showed.
    Returns (validated prompt set, YAML text to write).
    """
    return edited_options(path, group, {option: lines})


def edited_options(path: Path, group: str, edits: dict[str, str | list[str]]) -> tuple[PromptSet, str]:
    """The prompt set at ``path`` with each ``edits`` option's prompts replaced and its version
    bumped once; as :func:`edited_prompt_set`. A value is the lab's lines (:func:`parse_prompt_lines`)
    or a list of plain prompt texts (taken as they are: a "|" in one is text, not a weight)."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    for option, lines in edits.items():
        try:
            raw_option = data["groups"][group]["options"][option]
        except (KeyError, TypeError):
            raise PromptSetError([f"{path.name}: no option '{option}' in group '{group}'"]) from None
        raw_option = dict(raw_option) if isinstance(raw_option, dict) else {}
        if isinstance(lines, str):
            raw_option["prompts"] = parse_prompt_lines(lines)
        elif lines:
            raw_option["prompts"] = [{"text": text} for text in lines]
        else:
            raise PromptSetError([f"option '{option}' needs at least one prompt"])
        raw_option["templates"] = []
        data["groups"][group]["options"][option] = raw_option
    data["version"] = bump_version(data.get("version"))
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    if len(text.encode("utf-8")) > MAX_BYTES:  # what load_prompt_set would refuse once written
        raise PromptSetError([f"{path.name}: the edited set would be larger than {MAX_BYTES // 1_000_000} MB; "
                              "a prompt set is a small text file"])
    content_hash = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return parse_prompt_set(yaml.safe_load(text), path.name, text, content_hash), text


def save_version(collection: Collection, name: str, group: str, option: str, lines: str,
                 base: str | None = None) -> tuple[PromptSet, Path, int]:
    """Save ``option``'s edited prompts as the next version of prompt set ``name``.

    Written to ``<home>/prompt_sets/<name>.yaml`` and recorded in the catalog. ``base`` is the
    content hash of the version the edit was made on (what the lab page showed): when the set
    has changed since, :class:`StalePromptSet` and nothing is written, so two admins never
    silently overwrite each other. Returns (the saved prompt set, its file, its catalog record
    id). A bad edit raises :class:`PromptSetError` and writes nothing.
    """
    return save_options(collection, name, group, {option: lines}, base)


def save_options(collection: Collection, name: str, group: str, edits: dict[str, str | list[str]],
                 base: str | None = None) -> tuple[PromptSet, Path, int]:
    """Save several options' edited prompts (``{option: lines}``) as one new version; as
    :func:`save_version` (the prompt lab's "adopt all" of suggested prompts)."""
    home = collection.config.home
    opened, path = open_prompt_set(home, name)
    base = base or opened.content_hash
    # A bad edit is refused before anything is made: what label would refuse, too.
    labeling.check_prompt_lengths(edited_options(path, group, edits)[0], collection.config.max_prompt_chars)
    target = home_prompt_set_dir(home) / f"{name}.yaml"
    target.parent.mkdir(parents=True, exist_ok=True)
    # Check and write under one lock, across threads and across server processes.
    with _save_lock, open(target.parent / LOCK_FILE, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        current, path = open_prompt_set(home, name)
        if current.content_hash != base:
            raise StalePromptSet(name, current)
        _, text = edited_options(path, group, edits)
        write_atomically(target, text)
    saved = load_prompt_set(target)
    with collection.session() as s:
        record_id = labeling.record_prompt_set(s, saved)
    return saved, target, record_id


# -- suggested prompts (from ``prompt_search.suggest``, run as a job) ----------------------------

class AdoptError(LabelerError):
    """Suggested prompts that cannot be adopted as asked (none left, or an option not suggested)."""


def suggestion_states(suggestion: dict, current: PromptSet) -> dict[str, str]:
    """Per option of a suggestion report, what the lab offers against the set as it is now:
    ``adopt`` (new prompts), ``adopted`` (the set already has them), ``same`` (the search kept
    the set's prompts), ``gone`` (the option is no longer in the set)."""
    group = current.groups.get(suggestion["group"])
    states = {}
    for option, entry in suggestion["options"].items():
        if group is None or option not in group.option_names:
            states[option] = "gone"
        elif [p.text for p in group.option(option).prompts] == entry["prompts"]:
            states[option] = "adopted" if entry["changed"] else "same"
        else:
            states[option] = "adopt" if entry["changed"] else "same"
    return states


def adopt_suggestions(collection: Collection, name: str, suggestion: dict, options: list[str] | None,
                      base: str) -> tuple[PromptSet, Path, list[str]]:
    """Save the suggested prompts of ``options`` (None: every option still to adopt) as one new
    version of prompt set ``name``, edited from the version ``base`` (as :func:`save_options`).
    Returns (the saved set, its file, the options adopted). :class:`AdoptError` when there is
    nothing to adopt; :class:`StalePromptSet` when the set changed since the page showed it."""
    current, _ = open_prompt_set(collection.config.home, name)
    states = suggestion_states(suggestion, current)
    if options is None:
        options = [o for o, state in states.items() if state == "adopt"]
        if not options:
            raise AdoptError("every suggested prompt is already in the set: nothing to adopt")
    for option in options:
        if states.get(option) != "adopt":
            why = {"adopted": "is already adopted", "same": "kept its prompts in the search",
                   "gone": "is no longer in the set"}.get(states.get(option), "was not searched")
            raise AdoptError(f"option '{option}' {why}: nothing to adopt")
    edits: dict[str, str | list[str]] = {o: list(suggestion["options"][o]["prompts"]) for o in options}
    saved, target, _ = save_options(collection, name, suggestion["group"], edits, base)
    return saved, target, options


# -- previews -----------------------------------------------------------------------------

def truth_for(collection: Collection, group: str) -> tuple[dict[int, str], str]:
    """Known answers of ``group`` as ``{image_id: value}`` and where they came from.

    ``<home>/truth.csv`` (columns ``file`` + one per group, like the world's) when it exists,
    else the labels people accepted or corrected.
    """
    csv_path = collection.config.home / TRUTH_FILE
    if csv_path.is_file():
        values = evaluate.truth_from_csv(collection, csv_path, [group]).values.get(group, {})
        if values:
            return values, TRUTH_FILE
    return evaluate.truth_from_reviews(collection, [group]).values.get(group, {}), "reviewed labels"


def preview(collection: Collection, prompt_set: PromptSet, group: str, option: str, strategy: str,
            truth: dict[int, str] | None = None,
            vectors: tuple[np.ndarray, np.ndarray] | None = None) -> dict:
    """Top matches of ``option``, the group's confidence histogram, and accuracy per strategy.

    ``vectors`` (ids ``[N]``, vecs ``[N, D]``) lets a caller comparing two versions read the
    stored vectors once. ``histogram`` has ``HISTOGRAM_BINS`` counts over [0, 1].
    """
    encoded = labeling.encode_groups(collection, prompt_set, [group])[group]
    ids, vecs = vectors if vectors is not None else stored_vectors(collection)
    scale = labeling.logit_scale(collection)
    o = encoded.option_names.index(option)
    _, confidence, decision = encoded.decide(strategy, vecs, scale)
    top = np.argsort(-confidence[:, o], kind="stable")[:TOP_MATCHES]
    matches = [{"image_id": int(ids[i]), "confidence": float(confidence[i, o]),
                "answer": encoded.answer(int(decision.choice[i]))} for i in top]
    histogram = np.histogram(decision.confidence, bins=HISTOGRAM_BINS, range=(0.0, 1.0))[0].tolist()
    accuracy: dict[str, float] = {}
    if truth:
        try:
            results = evaluate.evaluate(collection, prompt_set, evaluate.Truth({group: truth}, []))
            accuracy = {name: metrics["accuracy"] for name, metrics in results.get(group, {}).items()}
        except LabelerError:
            accuracy = {}  # no truth value is an option of this group
    return {"matches": matches, "histogram": histogram, "chosen": int(np.sum(decision.choice == o)),
            "images": int(len(ids)), "accuracy": accuracy}


def stored_vectors(collection: Collection) -> tuple[np.ndarray, np.ndarray]:
    """Every present image's stored vector: (ids ``[N]``, vectors ``[N, D]``)."""
    with collection.session() as s:
        return collection.vectors.read(s)


def compare(collection: Collection, saved: PromptSet, group: str, option: str, strategy: str,
            lines: str, path: Path) -> tuple[dict, dict]:
    """Preview the edit (``lines`` for ``option``) beside the saved version ``saved`` at ``path``.

    Returns (edited preview with ``truth_count`` and ``truth_source``, saved preview), both over
    the same stored vectors and the same known answers.
    """
    edited, _ = edited_prompt_set(path, group, option, lines)
    truth, truth_source = truth_for(collection, group)
    vectors = stored_vectors(collection)
    result = preview(collection, edited, group, option, strategy, truth, vectors)
    result.update(truth_count=len(truth), truth_source=truth_source)
    baseline = preview(collection, saved, group, option, strategy, truth, vectors)
    return result, baseline


def explain_image(collection: Collection, image_id: int, prompt_set_ids: list[int]) -> dict:
    """Per group → option → per-prompt cosines for the prompt sets that made the image's labels.

    ``{"groups": {group: labeling.explain's entry}, "error": message or None}``; an explanation
    that cannot be made (no vector, model missing) leaves the page working with the stored scores.
    """
    out: dict = {"groups": {}, "error": None}
    try:
        with collection.session() as s:
            records = [s.get(PromptSetRecord, i) for i in prompt_set_ids]
            strategies = {group: strategy for group, strategy in
                          s.execute(select(Label.group, Label.strategy).where(Label.image_id == image_id))}
        for record in filter(None, records):
            prompt_set = prompt_set_from_record(record)
            for group in prompt_set.groups:
                strategy = labeling.cosine_strategy(strategies.get(group))
                out["groups"].update(labeling.explain(collection, image_id, prompt_set, strategy, [group]))
    except LabelerError as exc:
        out["error"] = str(exc)
    return out
