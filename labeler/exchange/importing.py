"""Import reviewed labels from a CSV (ours, a truth file, Label Studio's converter) or a Label Studio export.

Nothing is written unless the whole file passes: values within the review UI's limits (length,
no control characters) and, unless ``allow_new_values``, every group and value known to the
prompt set. The report says what happened to every cell: imported (as accepted or corrected),
unchanged, skipped with a reason, or unmatched.

The file is streamed: read, matched and written ``CHUNK`` rows at a time inside one transaction,
so memory stays bounded whatever its length, and a file that turns out broken or refused halfway
(cut off, not UTF-8, an unknown value on its last line) rolls back everything: nothing is ever
half-applied.
"""

from __future__ import annotations

import codecs
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..review import decisions as review
from ..review.values import lookalike, normalise, value_problem
from ..store import label_totals
from ..store.catalog import DECIDED, Label, User
from ..collection import Collection
from ..store.csvfiles import ID_COLUMNS, IMAGE_URL_COLUMN, CsvError, CsvRows, RowMatcher
from ..errors import LabelerError
from .export import FORMULA_STARTS, TASK_DATA_KEYS
from ..core.prompts import PromptSet

# Columns of Label Studio's converter CSV that are not groups (besides the task data keys).
CONVERTER_COLUMNS = ("id", "annotator", "annotation_id", "created_at", "updated_at", "lead_time", "agreement",
                     "history")
NEWER_REVIEW = "newer_review"  # the skip reason of a cell whose label changed since the export
EXAMPLES = 20  # skipped cells listed one by one in the report; the rest are only counted
MAX_UNMATCHED = 1000  # unmatched rows listed in the report; ``unmatched_count`` counts them all
CHUNK = 5000  # rows matched and written at a time
MAX_TASK = 16 * 2 ** 20  # characters in one task of a Label Studio export read a task at a time


class ImportRefused(LabelerError):
    """The file names groups or values the prompt set does not know; ``report`` says which."""

    def __init__(self, message: str, report: dict):
        super().__init__(message)
        self.report = report


@dataclass
class Cell:
    """One group's value in one row, with what the row says about it (our CSV's status columns)."""

    value: str
    status: str | None = None  # GROUP:status, when the file has it
    predicted: str | None = None  # GROUP:predicted, when the file has it
    version: int | None = None  # GROUP:version: the label's version when it was exported
    # who made it, where the file says (Label Studio's completed_by/annotator, or labeler's own
    # reviewer of an annotation our export carried in: _our_reviewer): a name, or a Label Studio
    # user id (an int: its exports name users by id)
    reviewer: str | int | None = None


@dataclass
class Row:
    """One row of a file: where it is (for messages), the image it names, its cell per group."""

    where: int | str
    ref: dict[str, str]  # image_id / path / file / image, for RowMatcher
    cells: dict[str, Cell]


@dataclass
class Skipped:
    """A row or cell the reader itself skips, with why."""

    where: int | str
    group: str
    reason: str


@dataclass
class Source:
    """A file read a row at a time: ``rows()`` reads it (again) from the start."""

    kind: str  # csv | long-csv | converter-csv | labelstudio
    groups: list[str]
    size: int  # bytes, for progress
    rows: Callable[[], Iterator[Row | Skipped]]
    bytes_read: Callable[[], int]  # how far the current ``rows()`` has read
    # each row names only some groups (a long CSV: one group a row), so a group a row does not
    # name is no skipped cell
    sparse: bool = False


def import_labels(collection: Collection, path: Path, groups: Sequence[str] | None = None,
                  user: str | None = None, prompt_set: PromptSet | None = None,
                  annotators: dict[int, str] | None = None,
                  allow_new_values: bool = False, overwrite_newer: bool = False,
                  progress: Callable[[int], None] | None = None,
                  total: Callable[[int], None] | None = None) -> dict:
    """Import the reviewed labels of ``path`` (CSV or Label Studio JSON); returns the report.

    Each value's reviewer is the one its file names (Label Studio's ``completed_by``), else ``user``:
    a labeler user of that name, or the name kept as text when no user has it (see :class:`_Reviewers`).
    Label Studio's exports name their annotators by user id: ``annotators`` maps those ids to names
    (its ``/api/users``); an id it does not name is counted in ``report["unnamed_annotators"]``.

    ``prompt_set``: what groups and values are checked against (default: the one each group's
    labels came from; nothing is checked while the collection has no labels). Raises
    :class:`ImportRefused` for unknown groups or values unless ``allow_new_values``, and a
    :class:`LabelerError` for a value the review UI would refuse; then nothing is written.

    A cell from our CSV export carries its label's version (``GROUP:version``): when the label has
    changed since, the cell is skipped as ``newer_review`` (re-importing an old export silently
    reverted newer reviews) unless ``overwrite_newer``.

    Steps: read the file and choose its groups; then per chunk of rows: match them to images, plan
    the values to write (:func:`plan_rows`), check them against the prompt set, write them
    (:func:`write_plan`). ``total`` gets the file's size in bytes, ``progress`` the bytes read
    since its last call. ``rows`` counts the rows read; ``unmatched`` lists the first
    ``MAX_UNMATCHED`` unmatched rows and ``unmatched_count`` counts them all. A cell whose image and
    group an earlier line of the file already set is written too (the file's last value stands) and
    counted in ``repeated``, the first ``EXAMPLES`` listed in ``repeated_rows``.
    """
    source = read_source(path)
    source.groups = _chosen_groups(source, groups, path)
    tally = _Tally({"source": str(path), "format": source.kind, "groups": source.groups, "prompt_set": None,
                    "rows": 0, "imported": 0, "accepted": 0, "corrected": 0, "unchanged": 0, "skipped": {},
                    "skipped_rows": [], "unknown_groups": [], "unknown_values": {}, "unmatched": [],
                    "unmatched_count": 0, "reviewers": {}, "unnamed_annotators": 0,
                    "repeated": 0, "repeated_rows": []})
    report = tally.report
    if total is not None:
        total(source.size)
    done = 0
    with collection.session() as s:
        matcher = RowMatcher(s, path)
        checker = _Checker(s, source.groups, prompt_set)
        reviewers = _Reviewers(s, user, report, annotators)
        refused = False
        for chunk in _chunks(source.rows(), CHUNK):
            rows = []
            for item in chunk:
                if isinstance(item, Skipped):
                    tally.skip(item.where, item.group, item.reason)
                else:
                    rows.append(item)
            report["rows"] += len(rows)
            ids = matcher.match([row.ref for row in rows])
            existing = _labels(s, [i for i in ids if i is not None], source.groups)
            plan = plan_rows(path, source.groups, rows, ids, existing, tally, overwrite_newer, source.sparse)
            checker.check(source.groups, plan, existing, report)
            refused = refused or (checker.checked and checker.unknown and not allow_new_values)
            if not refused:  # once refused, the rest is only read, for the report's list of unknowns
                write_plan(s, plan, existing, report, reviewers.of(rows, ids), path.name[:256])
                s.flush()
                s.expunge_all()  # the chunk's labels and events are written: bounded memory
            if progress is not None:
                position = source.bytes_read()
                progress(position - done)
                done = position
        checker.finish(report)
        report["skipped"] = dict(tally.skips)
        if refused:
            s.rollback()
            raise ImportRefused(f"{path}: {_unknown_text(report)} not in prompt set {report['prompt_set']}; "
                                "fix the file, or pass --allow-new-values to import them anyway", report)
    return report


def _chunks(items: Iterator, size: int) -> Iterator[list]:
    chunk: list = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


class _Reviewers:
    """Who reviewed each cell: the labeler user the file names (Label Studio's ``completed_by`` or
    ``annotator``: a user's name, or the name before the ``@`` of an e-mail address), else that name
    kept as text; a cell that names no one gets ``--user`` (a user, or kept as text the same way).
    A Label Studio user id is first named through ``annotators`` (id → e-mail). ``report["reviewers"]``
    lists each name read with its user's name, or None where it is kept as text."""

    def __init__(self, session: Session, default: str | None, report: dict, annotators: dict[int, str] | None):
        self.report, self.annotators = report, annotators or {}
        self.users = {name.casefold(): (uid, name) for uid, name in session.execute(select(User.id, User.name))}
        self.matched: dict[str, tuple[int, str] | None] = {}
        self.default = self._who(normalise(default).strip()) if default and default.strip() else (None, None)

    def of(self, rows: list[Row], ids: list[int | None]) -> dict[tuple[int, str], tuple[int | None, str | None]]:
        """(user id, name kept as text) per (image id, group) of the matched rows."""
        out: dict[tuple[int, str], tuple[int | None, str | None]] = {}
        for row, image_id in zip(rows, ids):
            if image_id is None:
                continue
            for group, cell in row.cells.items():
                reviewer = cell.reviewer
                if isinstance(reviewer, int):
                    reviewer = self.annotators.get(reviewer)
                    if reviewer is None:
                        self.report["unnamed_annotators"] += 1
                out[(image_id, group)] = self._who(reviewer) if reviewer else self.default
        return out

    def _who(self, name: str) -> tuple[int | None, str | None]:
        if name not in self.matched:
            if (problem := value_problem(name)) is not None:  # shown in pages and exports like a value
                raise LabelerError(f"reviewer {name[:40]!r}: {problem}; nothing imported")
            hit = self.users.get(name.casefold())
            if hit is None and "@" in name:
                hit = self.users.get(name.split("@")[0].casefold())
            self.matched[name] = hit
            self.report["reviewers"][name] = hit[1] if hit else None
        hit = self.matched[name]
        return (hit[0], None) if hit else (None, name[:256])


def _chosen_groups(source: Source, groups: Sequence[str] | None, path: Path) -> list[str]:
    """The group columns to import: ``groups`` when given (each must be a column), else all."""
    if groups:
        unknown = [g for g in groups if g not in source.groups]
        if unknown:
            raise LabelerError(f"{path}: no column for group(s) {', '.join(unknown)}")
        return list(groups)
    if not source.groups:
        raise LabelerError(f"{path}: no group columns to import")
    return source.groups


@dataclass
class _Tally:
    """The import report being filled, the skipped cells counted by reason, and which image and
    group the file has set so far (a bit per image id and group: a million images take 125 kB a
    group, where a set of pairs would take hundreds of MB)."""

    report: dict
    skips: Counter = field(default_factory=Counter)
    seen: dict[str, bytearray] = field(default_factory=dict)

    def planned(self, where: int | str, image_id: int, group: str) -> None:
        """Note a cell that will be written; count it as repeated when an earlier line set the same."""
        bits = self.seen.setdefault(group, bytearray())
        byte, bit = divmod(image_id, 8)
        if byte >= len(bits):
            bits.extend(bytes(byte + 1 - len(bits) + 4096))
        if not bits[byte] >> bit & 1:
            bits[byte] |= 1 << bit
            return
        self.report["repeated"] += 1
        if len(self.report["repeated_rows"]) < EXAMPLES:
            self.report["repeated_rows"].append({"line": where, "group": group, "image_id": image_id})

    def skip(self, where: int | str, group: str, reason: str) -> None:
        self.skips[reason] += 1
        if len(self.report["skipped_rows"]) < EXAMPLES:
            self.report["skipped_rows"].append({"line": where, "group": group, "reason": reason})

    def unmatched(self, row: Row) -> None:
        self.report["unmatched_count"] += 1
        if len(self.report["unmatched"]) < MAX_UNMATCHED:
            ref = row.ref
            self.report["unmatched"].append({"line": row.where, "ref": ref.get("image_id") or ref.get("path")
                                             or ref.get("file") or ref.get(IMAGE_URL_COLUMN) or ""})


def plan_rows(path: Path, groups: list[str], rows: list[Row], ids: list[int | None],
              existing: dict[tuple[int, str], Label], tally: _Tally,
              overwrite_newer: bool = False, sparse: bool = False) -> list[tuple[int, str, str]]:
    """``(image_id, group, value)`` to write, in file order; unmatched rows and skipped cells go
    into ``tally`` (a cell whose label changed since the export as ``newer_review``, unless
    ``overwrite_newer``). ``sparse``: a row's groups are its own cells' (a long CSV), not all of
    ``groups``. A value the review UI would refuse stops the import."""
    plan: list[tuple[int, str, str]] = []
    for row, image_id in zip(rows, ids):
        if image_id is None:
            tally.unmatched(row)
            continue
        for group in [g for g in groups if g in row.cells] if sparse else groups:
            value, reason = _cell_value(path, row.where, group, row.cells.get(group),
                                        existing.get((image_id, group)), overwrite_newer)
            if reason:
                tally.skip(row.where, group, reason)
            else:
                tally.planned(row.where, image_id, group)
                plan.append((image_id, group, value))
    return plan


def _cell_value(path: Path, where: int | str, group: str, cell: Cell | None, label: Label | None,
                overwrite_newer: bool = False) -> tuple[str, str | None]:
    """(the cell's value, None), or ("", why it is skipped)."""
    if cell is None:
        return "", "no choice for this group"
    value = _clean(cell.value)
    if not value:
        return "", "empty cell"
    problem = value_problem(value)
    if problem:
        raise LabelerError(f"{path}: {_at(where)}, {group}: {problem} ({value[:40]!r}...); nothing imported")
    if not overwrite_newer and _newer_review(cell, label, value):
        return "", NEWER_REVIEW  # changed since the export: the file is older news
    if cell.status in ("proposed", "auto"):  # auto: the model's, not a person's decision
        proposal = cell.predicted if cell.predicted else (label.predicted if label is not None else None)
        if proposal is None or value == proposal:
            return "", "status column says proposed: still the model's value"
    return value, None


def _newer_review(cell: Cell, label: Label | None, value: str) -> bool:
    """Whether ``label`` changed since the export that wrote ``cell`` (its version is newer), other
    than to the reviewed ``value`` itself."""
    return (label is not None and cell.version is not None and label.version > cell.version
            and not (label.value == value and label.status in DECIDED))


def write_plan(session: Session, plan: list[tuple[int, str, str]], existing: dict[tuple[int, str], Label],
               report: dict, reviewers: dict[tuple[int, str], tuple[int | None, str | None]] | None = None,
               source: str | None = None) -> None:
    """Record each planned value as a review (accepted or corrected) from the file ``source``, by the
    cell's reviewer in ``reviewers`` (a user id, or a name kept as text); one already so is unchanged."""
    added = False
    for image_id, group, value in plan:
        label = existing.get((image_id, group))
        if label is not None and label.value == value and label.status in DECIDED:
            report["unchanged"] += 1
            continue
        if label is None:
            label = existing[(image_id, group)] = Label(image_id=image_id, group=group)
            added = True
        user_id, name = (reviewers or {}).get((image_id, group), (None, None))
        event = review.record_import(session, label, value, user_id, source, name)
        report["imported"] += 1
        report[event.after_status] += 1
    if added:
        label_totals.bump(session)  # groups' kept label counts are stale


def _clean(cell: str) -> str:
    """A cell's value: NFC, spaces trimmed (never tabs: ``\\t=1`` must not become ``=1``), and our
    export's formula guard (a ``'`` before ``=``, ``+``, ``-``, ``@``, tab or CR) taken off again."""
    value = normalise(cell or "")
    if value.startswith("'") and value[1:].startswith(FORMULA_STARTS):
        value = value[1:]
    return value


def _at(where: int | str) -> str:
    return f"line {where}" if isinstance(where, int) else str(where)


def _labels(session, image_ids: list[int], groups: list[str]) -> dict[tuple[int, str], Label]:
    out: dict[tuple[int, str], Label] = {}
    unique = sorted(set(image_ids))
    for start in range(0, len(unique), 500):
        for label in session.scalars(select(Label).where(Label.image_id.in_(unique[start:start + 500]),
                                                         Label.group.in_(groups))):
            out[(label.image_id, label.group)] = label
    return out


class _Checker:
    """Checks planned values against the prompt set, a chunk at a time, and gathers the unknown ones.

    The prompt set of each group is the one given, else the one its labels came from, read once
    before anything is written. A value equal to the label's current one is never unknown (it is
    already in the catalog), nor is a group whose every value is. A look-alike of an option (other
    letters that look the same) stops the import.
    """

    def __init__(self, session: Session, groups: list[str], prompt_set: PromptSet | None):
        from ..labeling.learning import prompt_set_of_labels

        self.prompt_set = prompt_set
        self.sets: dict[str, PromptSet | None] = {}
        self.fallback = prompt_set
        if prompt_set is None:
            # Only the file's groups are looked up (each lookup sorts the group's labels); the other
            # groups only when one of the file's has no prompt set of its own.
            for group in groups:
                self.sets[group] = prompt_set_of_labels(session, group)
            if not all(self.sets.values()):
                known_groups = list(session.scalars(select(Label.group).where(Label.prompt_set_id.is_not(None))
                                                    .distinct().order_by(Label.group)))
                for group in known_groups:
                    if group not in self.sets:
                        self.sets[group] = prompt_set_of_labels(session, group)
                self.fallback = next((self.sets[g] for g in known_groups if self.sets[g] is not None), None)
        self.checked = not (self.fallback is None and not any(self.sets.values()))
        self.unknown_groups: list[str] = []
        self.unknown_values: dict[str, set[str]] = {}

    @property
    def unknown(self) -> bool:
        return bool(self.unknown_groups or self.unknown_values)

    def check(self, groups: list[str], plan: list[tuple[int, str, str]], existing: dict[tuple[int, str], Label],
              report: dict) -> None:
        if not self.checked:
            return
        for group in groups:
            spec_set = self._set_of(group)
            new = [value for image_id, g, value in plan if g == group
                   and (existing.get((image_id, g)) is None or existing[(image_id, g)].value != value)]
            if group not in spec_set.groups:
                if new and group not in self.unknown_groups:
                    self.unknown_groups.append(group)
                continue
            spec = spec_set.groups[group]
            allowed = set(spec.option_names) | ({spec.none_name} if spec.none_name else set())
            for value in dict.fromkeys(v for v in new if v not in allowed):
                if (imitated := lookalike(value, sorted(allowed))) is not None:
                    raise LabelerError(f"{report['source']}: {group}: {value!r} looks like the option "
                                       f"{imitated!r} but is other text (look-alike letters); nothing imported")
                self.unknown_values.setdefault(group, set()).add(value)

    def finish(self, report: dict) -> None:
        """Fill the report's ``unknown_groups``, ``unknown_values`` and ``prompt_set``."""
        if not self.checked:
            return
        report["unknown_groups"] = [g for g in report["groups"] if g in self.unknown_groups]
        report["unknown_values"] = {g: sorted(self.unknown_values[g]) for g in report["groups"]
                                    if g in self.unknown_values}
        report["prompt_set"] = ", ".join(sorted({self._set_of(g).name for g in report["groups"]}))

    def _set_of(self, group: str) -> PromptSet:
        return self.prompt_set if self.prompt_set is not None else (self.sets.get(group) or self.fallback)


def _unknown_text(report: dict) -> str:
    parts = []
    if report["unknown_groups"]:
        parts.append("group(s) " + ", ".join(report["unknown_groups"]))
    for group, values in report["unknown_values"].items():
        shown = ", ".join(repr(v) for v in values[:5]) + (f" and {len(values) - 5} more" if len(values) > 5 else "")
        parts.append(f"{group} value(s) {shown}")
    return "; ".join(parts)


# -- reading sources ----------------------------------------------------------------------

def read_source(path: Path) -> Source:
    """A Label Studio JSON export (``.json``, or a file that starts with ``[`` or ``{``), else a CSV."""
    if path.suffix.lower() == ".json" or (path.is_file() and _starts_like_json(path)):
        return _read_label_studio(path)
    return _read_csv(path)


def _starts_like_json(path: Path) -> bool:
    with path.open("rb") as fh:
        head = fh.read(64).lstrip(b"\xef\xbb\xbf \t\r\n")
    return head[:1] in (b"[", b"{")


def _read_csv(path: Path) -> Source:
    header = CsvRows(path, (*ID_COLUMNS, IMAGE_URL_COLUMN))
    columns = header.columns
    converter = "annotation_id" in columns or "annotator" in columns
    ignored = set(ID_COLUMNS) | ({*CONVERTER_COLUMNS, *TASK_DATA_KEYS} if converter else set())
    groups = [c for c in columns if c and c not in ignored and ":" not in c and c != "paths"
              and not (converter and (c.startswith("_data_") or c.endswith("_transcript")))]
    groups = list(dict.fromkeys(groups))
    if not converter and sorted(groups) == list(LONG_COLUMNS):
        return _read_long_csv(path, header)
    current = [header]

    def rows() -> Iterator[Row | Skipped]:
        reader = current[0] if current[0] is not None else CsvRows(path, (*ID_COLUMNS, IMAGE_URL_COLUMN))
        current[0] = None  # the header's reader is used once; a second pass opens the file again
        current.append(reader)
        # The converter writes one row per annotation, newest first: the first one of a task counts.
        seen: set[int | str] = set()
        for line, row in reader:
            if converter:
                task = (row.get("id") or "").strip()
                key = int(task) if task.isdecimal() and len(task) < 19 else task  # an int is smaller
                if task and key in seen:
                    yield Skipped(line, "*", "an older annotation of the same task")
                    continue
                seen.add(key)
            yield Row(line, {k: row.get(k) or "" for k in (*ID_COLUMNS, IMAGE_URL_COLUMN)},
                      {g: Cell(row.get(g) or "", (row.get(f"{g}:status") or "").strip() or None,
                               _clean(row.get(f"{g}:predicted") or "") or None,
                               _version(row.get(f"{g}:version"))) for g in groups})

    return Source("converter-csv" if converter else "csv", groups, header.size, rows,
                  lambda: current[-1].bytes_read)


LONG_COLUMNS = ("group", "value")  # a long CSV's columns besides the image's: one (group, value) a row


def _read_long_csv(path: Path, header: CsvRows) -> Source:
    """A CSV of one ``group`` and ``value`` a row beside the image's column (``file``, ``path`` or
    ``image_id``), as tools that export one annotation a line write it. A first pass finds its
    groups; an image's groups may be spread over any rows, and a row without a group is skipped."""
    groups: dict[str, None] = {}
    for _, row in header:
        name = (row.get("group") or "").strip()
        if name:
            groups[name] = None
    current: list[CsvRows] = [header]

    def rows() -> Iterator[Row | Skipped]:
        reader = CsvRows(path, (*ID_COLUMNS, IMAGE_URL_COLUMN))
        current.append(reader)
        for line, row in reader:
            name = (row.get("group") or "").strip()
            if not name:
                yield Skipped(line, "*", "no group named in the group column")
                continue
            yield Row(line, {k: row.get(k) or "" for k in (*ID_COLUMNS, IMAGE_URL_COLUMN)},
                      {name: Cell(row.get("value") or "")})

    return Source("long-csv", list(groups), header.size, rows, lambda: current[-1].bytes_read, sparse=True)


def _version(cell: str | None) -> int | None:
    text = (cell or "").strip()
    return int(text) if text.isdecimal() and len(text) < 19 else None


class _JsonTasks:
    """The tasks of a Label Studio JSON export (a list of tasks, or one task) read one at a time:
    memory stays bounded by the largest task (``MAX_TASK`` characters), whatever the file's length.
    Anything that is not such a file (cut off, not UTF-8, not JSON, not tasks) is a :class:`CsvError`
    naming where."""

    BLOCK = 1 << 20

    def __init__(self, path: Path):
        self.path = path
        self.bytes_read = 0

    def __iter__(self) -> Iterator[dict]:
        decoder = json.JSONDecoder()
        with self.path.open("rb") as raw:
            self._raw = raw
            self._decode = codecs.getincrementaldecoder("utf-8-sig")("strict")
            self._buf, self._pos, self._eof, self._before = "", 0, False, 0
            first = self._next_char()
            if first not in ("[", "{"):
                self._fail("a list of tasks, each with data")
            single = first == "{"
            if not single:
                self._pos += 1
            n = 0
            while True:
                if not single:
                    char = self._next_char()
                    if char == "]":
                        self._pos += 1
                        break
                    if n and char != ",":
                        self._fail("expected ',' or ']' after a task" if char else "cut off: no closing ']'")
                    if n:
                        self._pos += 1
                        self._next_char()
                task = self._value(decoder, n)
                if not isinstance(task, dict) or not isinstance(task.get("data", {}), dict):
                    self._fail("a list of tasks, each with data")
                yield task
                n += 1
                if single:
                    break
            if self._next_char():
                self._fail("more data after the end of the export")

    def _value(self, decoder: json.JSONDecoder, n: int):
        too_long = f"task {n + 1} is longer than {MAX_TASK // 2 ** 20} M characters or is broken JSON"
        while True:
            try:
                value, end = decoder.raw_decode(self._buf, self._pos)
                if end < len(self._buf) or self._eof:  # a value that ends the buffer may go on
                    if end - self._pos > MAX_TASK:
                        self._fail(too_long)
                    self._pos = end
                    return value
            except json.JSONDecodeError as exc:
                if self._eof:
                    self._fail(f"task {n + 1}: {exc.msg} (cut off or broken JSON)", self._before + exc.pos)
            except RecursionError:
                self._fail(f"task {n + 1} nests too deep")
            if len(self._buf) - self._pos > MAX_TASK:
                self._fail(too_long)
            self._more()

    def _next_char(self) -> str:
        """The next character that is not white space ('' at the end), left unread."""
        while True:
            while self._pos < len(self._buf) and self._buf[self._pos] in " \t\r\n":
                self._pos += 1
            if self._pos < len(self._buf):
                return self._buf[self._pos]
            if self._eof:
                return ""
            self._more()

    def _more(self) -> None:
        self._before += self._pos
        self._buf, self._pos = self._buf[self._pos:], 0
        block = self._raw.read(self.BLOCK)
        self.bytes_read += len(block)
        try:
            self._buf += self._decode.decode(block, final=not block)
        except UnicodeDecodeError as exc:
            self._fail(f"not UTF-8: byte {exc.object[exc.start]:#04x} near byte {self.bytes_read - len(block) + exc.start}")
        self._eof = not block

    def _fail(self, why: str, at: int | None = None):
        where = f" at character {at}" if at is not None else ""
        raise CsvError(f"{self.path}: not a Label Studio JSON export: {why}{where}")


def _read_label_studio(path: Path) -> Source:
    """Label Studio's JSON export: each task's newest finished annotation; predictions are ignored.
    Its JSON-MIN export (flat objects, no ``data``) is read too.

    Read twice, a task at a time: once for the groups (the ``from_name`` of every choice, or a
    JSON-MIN row's keys) and the kind, then for the rows."""
    if not path.is_file():
        raise LabelerError(f"{path}: no such file")
    groups: dict[str, None] = {}
    kinds: set[str] = set()
    for task in _JsonTasks(path):
        if "data" in task:
            kinds.add("labelstudio")
            newest = _newest(task)
            for region in _choice_regions(newest) if newest else []:
                if isinstance(region.get("from_name"), str) and isinstance((region.get("value") or {}).get("choices"),
                                                                              list):
                    groups.setdefault(region["from_name"])
        else:
            kinds.add("labelstudio-min")
            groups.update(dict.fromkeys(key for key, value in task.items() if _min_choice(key, value) is not None))
    if len(kinds) > 1:
        raise CsvError(f"{path}: mixes Label Studio tasks with JSON-MIN rows; export one format")
    kind = kinds.pop() if kinds else "labelstudio"
    current = [_JsonTasks(path)]

    def rows() -> Iterator[Row | Skipped]:
        tasks = current[-1] if current[-1].bytes_read == 0 else _JsonTasks(path)
        current.append(tasks)
        for n, task in enumerate(tasks):
            yield from (_min_row if kind == "labelstudio-min" else _task_row)(f"task {task.get('id', n)}", task)

    return Source(kind, list(groups), path.stat().st_size, rows, lambda: current[-1].bytes_read)


def _task_ref(data: dict) -> dict[str, str]:
    """How a task's row is found again: our task data (image id, path) or its image URL."""
    return {"image_id": str(data.get("image_id") or ""), "path": str(data.get("path") or ""),
            "file": "", IMAGE_URL_COLUMN: str(data.get("image") or "")}


def _task_row(where: str, task: dict) -> Iterator[Row | Skipped]:
    """A full export's task: a cell per choice of its newest finished annotation, by the user who
    last changed it (``updated_by``, else ``completed_by``), or by labeler's own reviewer where the
    annotation is the one our export carried in, unchanged (see :func:`_our_reviewer`)."""
    newest = _newest(task)
    if newest is None:
        yield Skipped(where, "*", "no finished annotation (predictions are not reviews)")
        return
    reviewer = _annotator(newest.get("updated_by") or newest.get("completed_by"))
    ours = newest.get("import_id") is not None  # imported into Label Studio, not made there
    cells: dict[str, Cell] = {}
    for region in _choice_regions(newest):
        group, choices = region.get("from_name"), (region.get("value") or {}).get("choices")
        if not isinstance(group, str) or not isinstance(choices, list):
            continue
        if len(choices) != 1 or not isinstance(choices[0], str):
            yield Skipped(where, group, "not exactly one choice")
            continue
        kept = _our_reviewer(task["data"], group, choices[0]) if ours else None
        cells[group] = Cell(choices[0], reviewer=reviewer if kept is None else kept or None)
    yield Row(where, _task_ref(task["data"]), cells)


def _our_reviewer(data: dict, group: str, choice: str) -> str | None:
    """The reviewer our export named for ``group`` (``data.labeler``, which Label Studio keeps as it
    is) when ``choice`` is the value that reviewer decided: an annotation our export carried into
    Label Studio comes back as made by whoever imported it there, who reviewed nothing. ``""``: ours,
    but it named no one (``--user`` then); None: not our reviewed value."""
    provenance = data.get("labeler")
    ours = provenance.get(group) if isinstance(provenance, dict) else None
    if not isinstance(ours, dict) or ours.get("status") not in DECIDED or ours.get("value") != choice:
        return None
    name = ours.get("reviewed_by")
    return name.strip() if isinstance(name, str) else ""


# Keys of a JSON-MIN row that are Label Studio's or our task data, never groups.
JSON_MIN_KEYS = frozenset({*CONVERTER_COLUMNS, *TASK_DATA_KEYS})


def _min_choice(key: str, value) -> str | list | None:
    """A JSON-MIN row's choice under ``key`` (a string, or a list of them, also as ``{"choices": [...]}``);
    None when ``key`` is no group."""
    if key in JSON_MIN_KEYS or key.startswith("_"):
        return None
    if isinstance(value, dict) and isinstance(value.get("choices"), list):
        value = value["choices"]
    return value if isinstance(value, (str, list)) else None


def _min_row(where: str, row: dict) -> Iterator[Row | Skipped]:
    """Label Studio's JSON-MIN export: one flat object per task, the task data beside each group's
    choice and ``annotator`` (who made it: a user id, or an e-mail where the converter had it). It
    does not say which annotation came from our export: a choice equal to the value labeler's
    reviewer decided (``data.labeler``) keeps that reviewer."""
    reviewer = _annotator(row.get("annotator"))
    cells: dict[str, Cell] = {}
    for key, value in row.items():
        choice = _min_choice(key, value)
        if isinstance(choice, list):
            if len(choice) != 1 or not isinstance(choice[0], str):
                yield Skipped(where, key, "not exactly one choice")
                continue
            choice = choice[0]
        if isinstance(choice, str):
            kept = _our_reviewer(row, key, choice)
            cells[key] = Cell(choice, reviewer=reviewer if kept is None else kept or None)
    yield Row(where, _task_ref(row), cells)


def _annotator(who) -> str | int | None:
    """Who made an annotation, as Label Studio exports it: an e-mail or name, an object with
    ``email``/``username``, or a user id (an int, named through its ``/api/users``)."""
    if isinstance(who, dict):
        who = who.get("email") or who.get("username") or who.get("id")
    if isinstance(who, bool):
        return None
    if isinstance(who, int):
        return who
    return who.strip() or None if isinstance(who, str) else None


def _newest(task: dict) -> dict | None:
    """``task``'s newest finished annotation; None when it has none."""
    finished = [a for a in task.get("annotations") or [] if isinstance(a, dict)
                and not a.get("was_cancelled") and not a.get("skipped")]
    if not finished:
        return None
    return max(enumerate(finished), key=lambda ia: (str(ia[1].get("updated_at") or ia[1].get("created_at")
                                                        or ""), ia[0]))[1]


def _choice_regions(annotation: dict) -> list[dict]:
    """The choice regions of one annotation."""
    return [region for region in annotation.get("result") or []
            if isinstance(region, dict) and str(region.get("type", "")).lower() == "choices"]
