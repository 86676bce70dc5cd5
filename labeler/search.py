"""Search: free text, image to image, combined queries, label filters and concept retrieval.

Every query becomes one unit vector and goes through the collection's FAISS index; filters are
applied afterwards through the catalog, over-fetching until enough hits pass.

Query syntax (:func:`parse_query`): terms joined by ``+`` and ``-``, each an optionally weighted
quoted text or image reference::

    "hammer" - "toy" + image:123
    0.5*"red" + "hammer"

A query with no quotes and no ``image:`` is one plain text, so ``red hammer`` just works.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from sqlalchemy import and_, bindparam, or_, select

from .core import scoring
from .store.catalog import MAX_ID, REVIEWED_ONLY, Flag, Image, ImageFile, Label, MapSelectionMember
from .collection import Collection
from .errors import LabelerError, NotFound
from .core.prompts import PromptSet, generic_templates
from .review.decisions import FILTER_STATUSES
from .store.stats import label_groups, label_values


class QuerySyntaxError(LabelerError):
    """A combined query that cannot be parsed."""


@dataclass(frozen=True)
class Hit:
    image_id: int
    path: str | None
    score: float

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Term:
    """One part of a combined query: ``weight * text`` or ``weight * image:ID``."""

    weight: float
    text: str | None = None
    image_id: int | None = None


_TOKEN = re.compile(r"""
    \s*(?:
      (?P<number>\d+(?:\.\d*)?|\.\d+)
    | (?P<quoted>"(?:[^"\\]|\\.)*")
    | (?P<image>image:(?P<image_id>\S+?)(?=[\s+\-*]|$))
    | (?P<op>[+\-*])
    | (?P<bad>\S)
    )""", re.VERBOSE)

EXACT_FILTER_LIMIT = 50_000  # filtered sets up to this size are scored directly


def _operator(query: str, match: re.Match, kind: str, at: str) -> float:
    """The sign a ``+`` or ``-`` between terms gives the next term."""
    if kind != "op" or match.group("op") == "*":
        raise QuerySyntaxError(f"expected + or - {at} in query {query!r}")
    return 1.0 if match.group("op") == "+" else -1.0


def _weight(query: str, match: re.Match, pos: int, at: str) -> tuple[float, int]:
    """A term's weight, which a ``*`` must follow: (the weight, the position after the ``*``)."""
    weight = float(match.group("number"))
    star = _TOKEN.match(query, pos)
    if star is None or star.lastgroup != "op" or star.group("op") != "*":
        raise QuerySyntaxError(f"expected * after weight {weight:g} {at} in query {query!r}")
    return weight, star.end()


def _term(query: str, match: re.Match, kind: str, weight: float, at: str) -> Term:
    """A quoted text or an ``image:ID`` reference, with its signed ``weight``."""
    if kind == "quoted":
        text = match.group("quoted")[1:-1].replace('\\"', '"').strip()
        if not text:
            raise QuerySyntaxError(f"empty quoted text {at} in query {query!r}")
        return Term(weight, text=text)
    raw = match.group("image_id")
    if not raw.isdigit() or int(raw) > MAX_ID:
        raise QuerySyntaxError(f"image:{raw} {at}: an image reference is image:ID with a catalog id")
    return Term(weight, image_id=int(raw))


def parse_query(query: str) -> list[Term]:
    """Parse a combined query into weighted terms; raises :class:`QuerySyntaxError` with the position."""
    query = query.strip()
    if not query:
        raise QuerySyntaxError("empty query")
    if '"' not in query and "image:" not in query:
        return [Term(1.0, text=query)]
    terms: list[Term] = []
    sign, weight, expect = 1.0, None, "term"  # expect: term | op
    pos = 0
    while pos < len(query):
        match = _TOKEN.match(query, pos)
        if match is None or match.end() == pos:
            break
        pos = match.end()
        kind = match.lastgroup if match.lastgroup != "image_id" else "image"
        at = f"at column {match.start(kind) + 1}"
        if kind == "bad":
            raise QuerySyntaxError(f"unexpected {match.group('bad')!r} {at} in query {query!r}")
        if expect == "op":
            sign, expect = _operator(query, match, kind, at), "term"
            continue
        if kind == "op":
            if match.group("op") == "-" and not terms and weight is None and sign == 1.0:
                sign = -1.0
                continue
            raise QuerySyntaxError(f"expected a term {at} in query {query!r}")
        if kind == "number":
            if weight is not None:
                raise QuerySyntaxError(f"expected * after a weight {at} in query {query!r}")
            weight, pos = _weight(query, match, pos, at)
            continue
        terms.append(_term(query, match, kind, sign * (1.0 if weight is None else weight), at))
        sign, weight, expect = 1.0, None, "op"
    if expect == "term":
        raise QuerySyntaxError(f"query ends where a term is expected: {query!r}")
    return terms


# -- query vectors ---------------------------------------------------------------------------
# Recent query vectors per catalog and model spec, so a server answers a repeated query text
# without the catalog's prompt cache (a session and two queries, 15% of a search). A spec's text
# vector never changes, which is what the catalog's cache relies on too; keyed by catalog as well,
# so every catalog still gets the text into its own cache.
QUERY_CACHE_SIZE = 1024
_query_cache: OrderedDict[tuple[str, str, str, bool], np.ndarray] = OrderedDict()
_query_cache_lock = threading.Lock()


def text_vector(collection: Collection, text: str, templates: bool = False) -> np.ndarray:
    """A unit query vector ``[D]`` for ``text``; with ``templates``, the mean over the generic templates."""
    with collection.session() as s:
        key = (collection.config.db_url, collection.models.key(s), text, templates)  # int8 apart from fp32
    with _query_cache_lock:
        vector = _query_cache.get(key)
        if vector is not None:
            _query_cache.move_to_end(key)
            return vector
    texts = [t.format(name=text) for t in generic_templates()] if templates else [text]
    # query=True: kept in the catalog's text cache under its LRU cap, not for ever
    with collection.session() as s:
        vector = scoring.unit(collection.vectors.text_vectors(s, texts, query=True).mean(axis=0))
    vector.flags.writeable = False  # shared by every later search for the text
    with _query_cache_lock:
        _query_cache[key] = vector
        if len(_query_cache) > QUERY_CACHE_SIZE:
            _query_cache.popitem(last=False)
    return vector


def image_vector(collection: Collection, image_id: int) -> np.ndarray:
    """The stored unit vector ``[D]`` of a present image."""
    with collection.session() as s:
        ids, vecs = collection.vectors.read(s, [int(image_id)])
    if len(ids) == 0:
        raise NotFound(f"image {image_id} is not in the collection (or its file is missing, or it is not embedded)")
    return vecs[0]


class SearchTooSlow(LabelerError):
    """A search that ran past its time budget (``LABELER_SEARCH_BUDGET_MS``); the server answers 503."""


def _within(deadline: float | None) -> None:
    if deadline is not None and time.monotonic() > deadline:
        raise SearchTooSlow("the search ran past its time budget (LABELER_SEARCH_BUDGET_MS); "
                            "try a shorter query or fewer filters")


class QueryTooLarge(LabelerError):
    """A query over the configured size limits: refused before any of it is parsed or encoded."""


def check_query_size(query: str, config) -> None:
    """Refuse a query longer than ``config.max_query_chars`` at once, before any work."""
    if len(query) > config.max_query_chars:
        raise QueryTooLarge(f"the query is {len(query):,} characters; the limit is {config.max_query_chars:,} "
                            "(LABELER_MAX_QUERY_CHARS)")


def query_vector(collection: Collection, query: str, templates: bool = False) -> np.ndarray:
    """The unit vector ``[D]`` of a combined query: the weighted sum of its terms' unit vectors."""
    config = collection.config
    check_query_size(query, config)
    terms = parse_query(query)
    if len(terms) > config.max_query_terms:
        raise QueryTooLarge(f"the query has {len(terms)} terms; the limit is {config.max_query_terms} "
                            "(LABELER_MAX_QUERY_TERMS)")
    total = None
    for term in terms:
        vec = (text_vector(collection, term.text, templates) if term.text is not None
               else image_vector(collection, term.image_id))
        total = term.weight * vec if total is None else total + term.weight * vec
    if float(np.linalg.norm(total)) < 1e-6:
        raise QuerySyntaxError(f"the terms of {query!r} cancel out")
    return scoring.unit(total)


def concept_vector(collection: Collection, prompt_set: PromptSet, concept: str) -> np.ndarray:
    """An option's ensemble vector ``[D]``: the weighted mean of its prompts' unit vectors, renormalised.

    ``concept`` is ``GROUP=OPTION`` or an option name, looked up in concept groups first.
    """
    group_name, _, option_name = concept.rpartition("=")
    groups = ([prompt_set.group(group_name)] if group_name else
              sorted(prompt_set.groups.values(), key=lambda g: g.kind != "concept"))
    for group in groups:
        if option_name in group.option_names:
            option = group.option(option_name)
            with collection.session() as s:
                vecs = collection.vectors.text_vectors(s, [p.text for p in option.prompts])
            weights = np.array([p.weight for p in option.prompts], np.float32)
            return scoring.mean_embeddings(vecs, np.zeros(len(vecs), np.int64), 1, weights)[0]
    raise NotFound(f"prompt set '{prompt_set.name}' has no option '{concept}'")


# -- filters and hits --------------------------------------------------------------------
def parse_where(items: Sequence[str]) -> dict[str, str]:
    """``["concept=hammer", "color=red"]`` → ``{"concept": "hammer", "color": "red"}``."""
    where = {}
    for item in items:
        group, sep, value = item.partition("=")
        if not sep or not group.strip() or not value.strip():
            raise LabelerError(f"bad filter {item!r}: use GROUP=VALUE, e.g. concept=hammer")
        where[group.strip()] = value.strip()
    return where


FILTER_VALUES_SHOWN = 12  # a group's values named in a filter's note; a long list is cut


def no_hit_notes(collection: Collection, where: dict[str, str] | None) -> list[str]:
    """Why a search can find nothing, where the user can change it (a plain "no matches" otherwise):
    no image embedded yet; or a ``GROUP=VALUE`` filter whose group has no labels, or whose value none
    of its labels holds. Empty when neither is the case."""
    notes = []
    with collection.session() as s:
        if collection.vectors.count(s) == 0:
            return ["no image is embedded yet; run: manage.py index PATH"]
        groups = label_groups(s) if where else []
        for group, value in (where or {}).items():
            if group not in groups:
                notes.append(f"no labels in group '{group}' (have: {', '.join(groups) or 'no labels yet'})")
                continue
            values = label_values(s, group)
            if value != "none" and value not in values:  # "none": the labels that hold no value
                shown = ", ".join(values[:FILTER_VALUES_SHOWN]) + (", ..." if len(values) > FILTER_VALUES_SHOWN else "")
                notes.append(f"no label of group '{group}' is '{value}' (its values: {shown or 'none'})")
    return notes


def allowed_ids(collection: Collection, where: dict[str, str] | None, status: str | None,
                flag: str | None = None, selection: int | None = None) -> set[int] | None:
    """Image ids passing the label filters; None when there are no filters.

    ``status`` applies to the labels of the ``where`` groups, or to any label without ``where``;
    ``reviewed`` means decided by a person: any status but proposed and auto. ``flag``: images flagged
    so (or one of their labels). ``selection``: the images of that map selection.
    """
    if selection is not None:
        with collection.session() as s:
            chosen = set(s.scalars(select(MapSelectionMember.image_id)
                                   .where(MapSelectionMember.selection_id == selection)))
        others = allowed_ids(collection, where, status, flag)
        return chosen if others is None else chosen & others
    if flag:
        with collection.session() as s:
            marked = set(s.scalars(select(Flag.image_id).where(Flag.name == flag).distinct()))
        others = allowed_ids(collection, where, status)
        return marked if others is None else marked & others
    if not where and not status:
        return None
    if status and status not in FILTER_STATUSES:
        raise LabelerError(f"unknown status '{status}' (known: {', '.join(FILTER_STATUSES)})")

    def status_clause():
        if status == "reviewed":  # REVIEWED_ONLY first: SQLite's partial index wants its words
            return and_(REVIEWED_ONLY, Label.status != "auto")
        return Label.status == status

    result: set[int] | None = None
    with collection.session() as s:
        for group, value in (where or {}).items():
            matches = Label.value == value
            if value == "none":  # "none of these" is stored as no value
                matches = or_(matches, Label.value.is_(None))
            query = select(Label.image_id).where(Label.group == group, matches)
            if status:
                query = query.where(status_clause())
            ids = set(s.scalars(query))
            result = ids if result is None else result & ids
        if result is None:
            result = set(s.scalars(select(Label.image_id).where(status_clause()).distinct()))
    return result


# Built once: a search runs it on every request, and building the statement cost as much as running it.
_PRESENT_PATHS = (select(Image.id, ImageFile.path, ImageFile.status)
                  .join(ImageFile, ImageFile.image_id == Image.id, isouter=True)
                  .where(Image.id.in_(bindparam("ids", expanding=True)), Image.status == "ok")
                  .order_by(ImageFile.id))


def present_paths(collection: Collection, image_ids: Sequence[int]) -> dict[int, str | None]:
    """Paths of the present images among ``image_ids``; missing images are left out."""
    ids = [int(i) for i in image_ids]
    paths: dict[int, str | None] = {}
    with collection.session() as s:
        for start in range(0, len(ids), 500):
            rows = s.execute(_PRESENT_PATHS, {"ids": ids[start:start + 500]}).all()
            for image_id, path, file_status in rows:
                if image_id not in paths or (paths[image_id] is None and file_status == "ok"):
                    paths[image_id] = path if file_status == "ok" else paths.get(image_id)
    return paths


def nearest(collection: Collection, vector: np.ndarray, k: int, allowed: set[int] | None = None,
            exclude: set[int] | None = None, exact: bool = False, deadline: float | None = None) -> list[Hit]:
    """The ``k`` best present images for a unit ``vector`` ``[D]``, best first, over-fetching when filtering.

    ``exact``: the true best, whatever approximate index the collection has (to measure its recall).
    """
    if k <= 0:
        raise LabelerError("k must be at least 1")
    if allowed is not None and len(allowed) <= EXACT_FILTER_LIMIT:
        # A small filtered set: score its stored vectors at once instead of widening index searches.
        with collection.session() as s:
            ids, vecs = collection.vectors.read(s, sorted(allowed - (exclude or set())))
        scores = vecs @ vector
        best = np.argsort(-scores, kind="stable")[:k]
        paths = present_paths(collection, [int(i) for i in ids[best]])
        return [Hit(int(ids[j]), paths[int(ids[j])], float(scores[j])) for j in best if int(ids[j]) in paths]
    with collection.session() as s:
        index = collection.index_keeper.get(s)
    total = len(index)
    if total == 0 or (allowed is not None and not allowed):
        return []
    fetch = min(total, k + len(exclude or ()) if allowed is None else k * 4)
    while True:
        _within(deadline)  # a filter that keeps few hits widens the search again and again
        scores, ids = index.search(vector[None, :], fetch, exact=exact)
        candidates = [(int(i), float(sc)) for i, sc in zip(ids[0], scores[0]) if i >= 0
                      and (allowed is None or int(i) in allowed) and int(i) not in (exclude or ())]
        paths = present_paths(collection, [i for i, _ in candidates])
        hits = [Hit(i, paths[i], sc) for i, sc in candidates if i in paths]
        if len(hits) >= k or fetch >= total:
            return hits[:k]
        fetch = min(total, fetch * 4)


def search(collection: Collection, query: str, k: int = 20, where: dict | None = None, status: str | None = None,
           templates: bool = False, exact: bool = False, flag: str | None = None,
           deadline: float | None = None, selection: int | None = None) -> list[Hit]:
    """Free-text or combined query → hits best first, filtered by labels, review status and flag;
    past ``deadline`` (``time.monotonic()``), :class:`SearchTooSlow` between its steps."""
    vector = query_vector(collection, query, templates)
    _within(deadline)
    allowed = allowed_ids(collection, where, status, flag, selection)
    _within(deadline)
    return nearest(collection, vector, k, allowed, exact=exact, deadline=deadline)


def search_concept(collection: Collection, prompt_set: PromptSet, concept: str, k: int = 20,
                   where: dict | None = None, status: str | None = None, exact: bool = False) -> list[Hit]:
    """A concept's top ``k`` through the index, using the option's ensemble vector."""
    vector = concept_vector(collection, prompt_set, concept)
    return nearest(collection, vector, k, allowed_ids(collection, where, status), exact=exact)


def resolve_image(collection: Collection, ref: str | int) -> int:
    """An image id, given an id or a path known to the catalog."""
    text = str(ref).strip()
    if text.isdecimal():  # not isdigit: int() refuses '²'
        if int(text) > MAX_ID:
            raise NotFound(f"no image {text} in the catalog")
        return int(text)
    candidates = {os.path.abspath(text), str(Path(text).expanduser().resolve())}
    with collection.session() as s:
        image_id = s.scalar(select(ImageFile.image_id).where(ImageFile.path.in_(candidates),
                                                             ImageFile.image_id.is_not(None)))
        failure = None if image_id is not None else s.scalar(
            select(ImageFile.error).where(ImageFile.path.in_(candidates), ImageFile.status == "failed"))
    if failure is not None:  # the catalog knows the file: say why it has no image
        raise NotFound(f"{text} failed to index: {failure}")
    if image_id is None:
        raise NotFound(f"no image in the catalog at {text}")
    return int(image_id)


def similar(collection: Collection, image: int | str, k: int = 20, where: dict | None = None,
            status: str | None = None, flag: str | None = None, deadline: float | None = None,
            selection: int | None = None) -> list[Hit]:
    """Images most like ``image`` (an id or a path), best first, the image itself left out."""
    image_id = resolve_image(collection, image)
    vector = image_vector(collection, image_id)
    return nearest(collection, vector, k, allowed_ids(collection, where, status, flag, selection), exclude={image_id},
                   deadline=deadline)


def find(collection: Collection, text: str, k: int = 20, where: dict[str, str] | None = None,
         status: str | None = None, similar_to: int | None = None, flag: str | None = None,
         selection: int | None = None) -> list[Hit]:
    """Images like ``similar_to`` when given, else matches for the query ``text``; none for neither.

    The web's one way in: the search page and ``/api/search`` take both kinds of query, each
    within ``LABELER_SEARCH_BUDGET_MS`` (:class:`SearchTooSlow` past it).
    """
    deadline = time.monotonic() + collection.config.search_budget_ms / 1000
    if similar_to is None and not text:
        return []
    with collection.session() as s:  # an empty collection is a clear error before any text is encoded
        collection.index_keeper.get(s)
    if similar_to is not None:
        return similar(collection, similar_to, k, where=where, status=status, flag=flag, deadline=deadline,
                       selection=selection)
    return search(collection, text, k, where=where, status=status, flag=flag, deadline=deadline, selection=selection)
