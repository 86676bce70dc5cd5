"""Candidate prompts for the prompt search: where they come from, and their vectors, cached per model.

The candidates are plain text a person can read: the prompt set's own prompts of every group,
the shipped generic templates (``prompt_sets/templates.yaml``) filled with every group's option
names, every attribute option put before every concept option ("a red hammer"), and the phrases
of a user's vocabulary file. Each is encoded once per model, through the catalog's text cache.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import yaml

from ..collection import Collection
from ..core.prompts import Group, PromptSet, generic_templates
from ..errors import LabelerError


class CandidatesError(LabelerError):
    """A candidates file or candidate prompt that cannot be used (empty, binary, too big, too long)."""


MAX_VOCABULARY_BYTES = 1_000_000  # a vocabulary file is phrases a person wrote, not a corpus


@dataclass(frozen=True)
class Candidates:
    """Candidate prompt texts ``[C]`` and their unit vectors ``[C, D]``."""

    texts: list[str]
    vecs: np.ndarray
    families: list[np.ndarray] = field(default_factory=list)  # index arrays of candidates sharing a form

    def index(self) -> dict[str, int]:
        return {t: i for i, t in enumerate(self.texts)}


def read_vocabulary(path: Path) -> list[str]:
    """Phrases from a user's file: a YAML list (or mapping of lists), else one phrase per line.

    Raises :class:`CandidatesError` on a file that is empty, binary, not UTF-8 or over 1 MB.
    """
    try:
        size = path.stat().st_size
        if size > MAX_VOCABULARY_BYTES:
            raise CandidatesError(f"{path}: {size:,} bytes; a candidates file may have at most 1 MB of phrases")
        raw = path.read_bytes()
    except OSError as exc:
        raise CandidatesError(f"{path}: cannot read the candidates file: {exc.strerror or exc}") from None
    if b"\0" in raw:
        raise CandidatesError(f"{path}: a binary file; candidates are phrases, one per line or a YAML list")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise CandidatesError(f"{path}: not UTF-8 text; candidates are phrases, one per line or a YAML list") from None
    phrases: list[str] = []
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        data = None
    if isinstance(data, list):
        phrases = [str(p) for p in data if isinstance(p, (str, int, float))]
    elif isinstance(data, dict):
        for value in data.values():
            phrases += [str(p) for p in (value if isinstance(value, list) else [value]) if isinstance(p, str)]
    else:
        phrases = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    phrases = list(dict.fromkeys(p.strip() for p in phrases if p and p.strip()))
    if not phrases:
        raise CandidatesError(f"{path}: no phrases; give one candidate prompt per line, or a YAML list")
    return phrases


def candidate_texts(prompt_set: PromptSet, vocabulary: Sequence[str] = ()) -> tuple[list[str], list[list[str]]]:
    """Every candidate prompt, each once, in a fixed order (so a search is reproducible), and the
    families among them: each template filled with every option name of every group ("a red
    object", "a blue object", ...), whose prompts share a form and so a bias."""
    texts: list[str] = []
    for group in prompt_set.groups.values():
        texts += [p.text for o in group.options for p in o.prompts]
    names = list(dict.fromkeys(o.name for g in prompt_set.groups.values() for o in g.options))
    concepts = [o.name for g in prompt_set.groups.values() if g.kind == "concept" for o in g.options]
    forms = list(dict.fromkeys(_set_templates(prompt_set) + generic_templates()))
    forms += [f"a {{name}} {c}" for c in concepts]
    families = [[t.replace("{name}", n) for n in names] for t in forms]
    for family in families:
        texts += family
    texts += list(vocabulary)
    return list(dict.fromkeys(t for t in texts if t.strip())), families


def _set_templates(prompt_set: PromptSet) -> list[str]:
    """The templates a prompt set's file names (set, group and option level), in file order."""
    data = yaml.safe_load(prompt_set.source) if prompt_set.source else {}
    found: list[str] = []

    def take(node: object) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("templates"), list):
                found.extend(t for t in node["templates"] if isinstance(t, str) and "{name}" in t)
            for value in node.values():
                take(value)

    take(data)
    return found


def encode_candidates(collection: Collection, texts: list[str], limit: int,
                      families: Sequence[Sequence[str]] = ()) -> Candidates:
    """The candidates' vectors through the per-model text cache: each text is encoded once per model."""
    long = [t for t in texts if len(t) > limit]
    if long:
        raise CandidatesError(f"a candidate prompt of {len(long[0]):,} characters ({long[0][:40]!r}...); "
                              f"the limit is {limit:,} (LABELER_MAX_PROMPT_CHARS)")
    with collection.session() as s:
        vecs = collection.vectors.text_vectors(s, texts)
    index = {t: i for i, t in enumerate(texts)}
    return Candidates(texts, np.asarray(vecs, np.float32),
                      [np.asarray([index[t] for t in f if t in index], np.int64) for f in families])


def starting_ensembles(candidates: Candidates, group: Group) -> list[list[int]]:
    """Each option's own prompts as candidate indices: where the search starts."""
    index = candidates.index()
    return [[index[p.text] for p in o.prompts] for o in group.options]


def related_ensembles(candidates: Candidates, prompt_set: PromptSet, group: str) -> dict[str, list[list[int]]]:
    """Every other group's options as candidate indices (``{name: [[...] per option]}``): whole
    families a search may map onto ``group``'s options (colour's options onto palette's)."""
    return {name: starting_ensembles(candidates, other) for name, other in prompt_set.groups.items()
            if name != group and len(other.options) >= 2}
