"""Import reviewed labels from a CSV (ours, a truth file, Label Studio's converter) or a Label Studio export.

Nothing is written unless the whole file passes: values within the review UI's limits (length,
no control characters) and, unless ``allow_new_values``, every group and value known to the
prompt set. The report says what happened to every cell: imported (as accepted or corrected),
unchanged, skipped with a reason, or unmatched.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..review import decisions as review
from ..review.values import lookalike, normalise, value_problem
from ..store.catalog import Label, User
from ..collection import Collection
from ..store.csvfiles import ID_COLUMNS, IMAGE_URL_COLUMN, CsvError, match_rows, read_csv
from ..errors import LabelerError
from .export import FORMULA_STARTS, TASK_DATA_KEYS
from ..core.prompts import PromptSet

# Columns of Label Studio's converter CSV that are not groups (besides the task data keys).
CONVERTER_COLUMNS = ("id", "annotator", "annotation_id", "created_at", "updated_at", "lead_time", "agreement",
                     "history")
NEWER_REVIEW = "newer_review"  # the skip reason of a cell whose label changed since the export
REVIEWED = ("accepted", "corrected")
EXAMPLES = 20  # skipped cells listed one by one in the report; the rest are only counted


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
    reviewer: str | None = None  # who made it, where the file says (Label Studio's completed_by/annotator)


@dataclass
class Source:
    """A file read into rows that each name an image (``ref``) and hold a cell per group."""

    kind: str  # csv | converter-csv | labelstudio
    groups: list[str]
    refs: list[dict[str, str]]  # image_id / path / file / image per row, for match_rows
    cells: list[dict[str, Cell]]
    lines: list[int | str]  # where each row is, for messages
    skipped: list[tuple[int | str, str, str]] = field(default_factory=list)  # (where, group, reason)

    def add_task(self, where: str, data: dict, cells: dict[str, Cell]) -> None:
        """A Label Studio task's row: found again by our task data (image id, path) or its image URL."""
        self.refs.append({"image_id": str(data.get("image_id") or ""), "path": str(data.get("path") or ""),
                          "file": "", IMAGE_URL_COLUMN: str(data.get("image") or "")})
        self.cells.append(cells)
        self.lines.append(where)


def import_labels(collection: Collection, path: Path, groups: Sequence[str] | None = None,
                  user_id: int | None = None, prompt_set: PromptSet | None = None,
                  allow_new_values: bool = False, overwrite_newer: bool = False) -> dict:
    """Import the reviewed labels of ``path`` (CSV or Label Studio JSON); returns the report.

    ``prompt_set``: what groups and values are checked against (default: the one each group's
    labels came from; nothing is checked while the collection has no labels). Raises
    :class:`ImportRefused` for unknown groups or values unless ``allow_new_values``, and a
    :class:`LabelerError` for a value the review UI would refuse; then nothing is written.

    A cell from our CSV export carries its label's version (``GROUP:version``): when the label has
    changed since, the cell is skipped as ``newer_review`` (re-importing an old export silently
    reverted newer reviews) unless ``overwrite_newer``.

    Steps: read the file and choose its groups, match its rows to images, plan the values to
    write (:func:`plan_rows`), check them against the prompt set, write them (:func:`write_plan`).
    """
    source = read_source(path)
    source.groups = _chosen_groups(source, groups, path)
    tally = _Tally({"source": str(path), "format": source.kind, "groups": source.groups, "prompt_set": None,
                    "imported": 0, "accepted": 0, "corrected": 0, "unchanged": 0, "skipped": {},
                    "skipped_rows": [], "unknown_groups": [], "unknown_values": {}, "unmatched": [],
                    "reviewers": {}})
    for where, group, reason in source.skipped:
        tally.skip(where, group, reason)
    report = tally.report
    with collection.session() as s:
        ids = match_rows(s, path, source.refs)
        existing = _labels(s, [i for i in ids if i is not None], source.groups)
        plan = plan_rows(path, source, ids, existing, tally, overwrite_newer)
        checked = _check_known(s, source.groups, plan, existing, prompt_set, report)
        if checked and (report["unknown_groups"] or report["unknown_values"]) and not allow_new_values:
            report["skipped"] = dict(tally.skips)
            raise ImportRefused(f"{path}: {_unknown_text(report)} not in prompt set {report['prompt_set']}; "
                                "fix the file, or pass --allow-new-values to import them anyway", report)
        by_cell = _cell_reviewers(s, source, ids, user_id, report)
        write_plan(s, plan, existing, user_id, report, by_cell, path.name[:256])
    report["skipped"] = dict(tally.skips)
    return report


def _cell_reviewers(session: Session, source: Source, ids: list[int | None], default: int | None,
                    report: dict) -> dict[tuple[int, str], int | None]:
    """The labeler user of each cell that names its reviewer (Label Studio's ``completed_by`` or
    ``annotator``): the user of that name, or of the name before the ``@`` of an e-mail address. A
    name no user has leaves the cell to ``default`` (``--user``), and is listed in
    ``report["reviewers"]`` with None, beside each matched name and its user."""
    names = {cell.reviewer for cells in source.cells for cell in cells.values() if cell.reviewer}
    users = {name.casefold(): (uid, name) for uid, name in session.execute(select(User.id, User.name))}
    matched: dict[str, tuple[int, str] | None] = {}
    for name in sorted(names):
        matched[name] = users.get(name.casefold()) or (users.get(name.split("@")[0].casefold())
                                                        if "@" in name else None)
    report["reviewers"] = {name: (hit[1] if hit else None) for name, hit in matched.items()}
    out: dict[tuple[int, str], int | None] = {}
    for cells, image_id in zip(source.cells, ids):
        if image_id is None:
            continue
        for group, cell in cells.items():
            hit = matched.get(cell.reviewer) if cell.reviewer else None
            out[(image_id, group)] = hit[0] if hit else default
    return out


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
    """The import report being filled, and the skipped cells counted by reason."""

    report: dict
    skips: Counter = field(default_factory=Counter)

    def skip(self, where: int | str, group: str, reason: str) -> None:
        self.skips[reason] += 1
        if len(self.report["skipped_rows"]) < EXAMPLES:
            self.report["skipped_rows"].append({"line": where, "group": group, "reason": reason})


def plan_rows(path: Path, source: Source, ids: list[int | None], existing: dict[tuple[int, str], Label],
              tally: _Tally, overwrite_newer: bool = False) -> list[tuple[int, str, str]]:
    """``(image_id, group, value)`` to write, in file order; unmatched rows and skipped cells go
    into ``tally`` (a cell whose label changed since the export as ``newer_review``, unless
    ``overwrite_newer``). A value the review UI would refuse stops the import."""
    plan: list[tuple[int, str, str]] = []
    for where, cells, image_id, ref in zip(source.lines, source.cells, ids, source.refs):
        if image_id is None:
            tally.report["unmatched"].append({"line": where, "ref": ref.get("image_id") or ref.get("path")
                                              or ref.get("file") or ref.get(IMAGE_URL_COLUMN) or ""})
            continue
        for group in source.groups:
            value, reason = _cell_value(path, where, group, cells.get(group), existing.get((image_id, group)),
                                        overwrite_newer)
            if reason:
                tally.skip(where, group, reason)
            else:
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
            and not (label.value == value and label.status in REVIEWED))


def write_plan(session: Session, plan: list[tuple[int, str, str]], existing: dict[tuple[int, str], Label],
               user_id: int | None, report: dict, reviewers: dict[tuple[int, str], int | None] | None = None,
               source: str | None = None) -> None:
    """Record each planned value as a review (accepted or corrected) from the file ``source``, by the
    cell's reviewer in ``reviewers`` (else ``user_id``); one already so is unchanged."""
    for image_id, group, value in plan:
        label = existing.get((image_id, group))
        if label is not None and label.value == value and label.status in REVIEWED:
            report["unchanged"] += 1
            continue
        if label is None:
            label = existing[(image_id, group)] = Label(image_id=image_id, group=group)
        event = review.record_import(session, label, value, (reviewers or {}).get((image_id, group), user_id), source)
        report["imported"] += 1
        report[event.after_status] += 1


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


def _check_known(session, groups: list[str], plan: list[tuple[int, str, str]],
                 existing: dict[tuple[int, str], Label], prompt_set: PromptSet | None, report: dict) -> bool:
    """Fill ``unknown_groups`` and ``unknown_values``; False when there is no prompt set to check against.

    A value equal to the label's current one is never unknown (it is already in the catalog), nor
    is a group whose every value is.
    """
    from ..labeling.learning import prompt_set_of_labels

    sets: dict[str, PromptSet | None] = {}
    fallback = prompt_set
    if prompt_set is None:
        known_groups = list(session.scalars(select(Label.group).where(Label.prompt_set_id.is_not(None))
                                            .distinct().order_by(Label.group)))
        for group in known_groups:
            sets[group] = prompt_set_of_labels(session, group)
        fallback = next((sets[g] for g in known_groups if sets[g] is not None), None)
    if fallback is None and not any(sets.values()):
        return False
    names = set()
    unknown_values: dict[str, set[str]] = {}
    for group in groups:
        spec_set = prompt_set if prompt_set is not None else (sets.get(group) or fallback)
        names.add(spec_set.name)
        new = [value for image_id, g, value in plan if g == group
               and (existing.get((image_id, g)) is None or existing[(image_id, g)].value != value)]
        if group not in spec_set.groups:
            if new:
                report["unknown_groups"].append(group)
            continue
        spec = spec_set.groups[group]
        allowed = set(spec.option_names) | ({spec.none_name} if spec.none_name else set())
        for value in new:
            if value not in allowed and (imitated := lookalike(value, sorted(allowed))) is not None:
                raise LabelerError(f"{report['source']}: {group}: {value!r} looks like the option {imitated!r} "
                                   "but is other text (look-alike letters); nothing imported")
        if any(value not in allowed for value in new):
            unknown_values[group] = {value for value in new if value not in allowed}
    report["unknown_values"] = {g: sorted(v) for g, v in unknown_values.items()}
    report["prompt_set"] = ", ".join(sorted(names))
    return True


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
    rows = read_csv(path, (*ID_COLUMNS, IMAGE_URL_COLUMN))
    columns = list(rows[0].keys()) if rows else []
    converter = "annotation_id" in columns or "annotator" in columns
    ignored = set(ID_COLUMNS) | ({*CONVERTER_COLUMNS, *TASK_DATA_KEYS} if converter else set())
    groups = [c for c in columns if c and c not in ignored and ":" not in c and c != "paths"
              and not (converter and (c.startswith("_data_") or c.endswith("_transcript")))]
    source = Source("converter-csv" if converter else "csv", groups, [], [], [])
    seen: set[str] = set()
    for line, row in enumerate(rows, start=2):
        if converter:
            # The converter writes one row per annotation, newest first: the first one of a task counts.
            task = (row.get("id") or "").strip()
            if task and task in seen:
                source.skipped.append((line, "*", "an older annotation of the same task"))
                continue
            seen.add(task)
        source.refs.append({k: row.get(k) or "" for k in (*ID_COLUMNS, IMAGE_URL_COLUMN)})
        source.cells.append({g: Cell(row.get(g) or "", (row.get(f"{g}:status") or "").strip() or None,
                                     _clean(row.get(f"{g}:predicted") or "") or None,
                                     _version(row.get(f"{g}:version"))) for g in groups})
        source.lines.append(line)
    return source


def _version(cell: str | None) -> int | None:
    text = (cell or "").strip()
    return int(text) if text.isdecimal() and len(text) < 19 else None


def _read_label_studio(path: Path) -> Source:
    """Label Studio's JSON export: each task's newest finished annotation; predictions are ignored."""
    if not path.is_file():
        raise LabelerError(f"{path}: no such file")
    try:
        tasks = json.loads(path.read_bytes().decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise CsvError(f"{path}: not a Label Studio JSON export: {str(exc).splitlines()[0][:200]}") from None
    if isinstance(tasks, dict):
        tasks = [tasks]
    if isinstance(tasks, list) and tasks and all(isinstance(t, dict) and "data" not in t for t in tasks):
        return _read_json_min(tasks)
    if not isinstance(tasks, list) or not all(isinstance(t, dict) and isinstance(t.get("data"), dict)
                                              for t in tasks):
        raise CsvError(f"{path}: not a Label Studio JSON export (a list of tasks, each with data)")
    source = Source("labelstudio", [], [], [], [])
    groups: dict[str, None] = {}
    for n, task in enumerate(tasks):
        where = f"task {task.get('id', n)}"
        finished = [a for a in task.get("annotations") or [] if isinstance(a, dict)
                    and not a.get("was_cancelled") and not a.get("skipped")]
        if not finished:
            source.skipped.append((where, "*", "no finished annotation (predictions are not reviews)"))
            continue
        newest = max(enumerate(finished), key=lambda ia: (str(ia[1].get("updated_at") or ia[1].get("created_at")
                                                               or ""), ia[0]))[1]
        cells: dict[str, Cell] = {}
        for region in newest.get("result") or []:
            if not isinstance(region, dict) or str(region.get("type", "")).lower() != "choices":
                continue
            group, choices = region.get("from_name"), (region.get("value") or {}).get("choices")
            if not isinstance(group, str) or not isinstance(choices, list):
                continue
            groups.setdefault(group)
            if len(choices) != 1 or not isinstance(choices[0], str):
                source.skipped.append((where, group, "not exactly one choice"))
                continue
            cells[group] = Cell(choices[0], reviewer=_annotator(newest.get("completed_by")))
        data = task["data"]
        source.add_task(where, data, cells)
    source.groups = list(groups)
    return source


# Keys of a JSON-MIN row that are Label Studio's or our task data, never groups.
JSON_MIN_KEYS = frozenset({*CONVERTER_COLUMNS, *TASK_DATA_KEYS})


def _read_json_min(rows: list[dict]) -> Source:
    """Label Studio's JSON-MIN export: one flat object per task, the task data beside each group's
    choice (a string, or ``{"choices": [...]}`` for several) and ``annotator``, the e-mail of who made it."""
    source = Source("labelstudio-min", [], [], [], [])
    groups: dict[str, None] = {}
    for n, row in enumerate(rows):
        where = f"task {row.get('id', n)}"
        cells: dict[str, Cell] = {}
        for key, value in row.items():
            if key in JSON_MIN_KEYS or key.startswith("_"):
                continue
            if isinstance(value, dict) and isinstance(value.get("choices"), list):
                value = value["choices"]
            if isinstance(value, list):
                groups.setdefault(key)
                if len(value) != 1 or not isinstance(value[0], str):
                    source.skipped.append((where, key, "not exactly one choice"))
                    continue
                value = value[0]
            if not isinstance(value, str):
                continue
            groups.setdefault(key)
            cells[key] = Cell(value, reviewer=_annotator(row.get("annotator")))
        source.add_task(where, row, cells)
    source.groups = list(groups)
    return source


def _annotator(who) -> str | None:
    """Who made an annotation, as Label Studio exports it: an e-mail or name, or an object with
    ``email``/``username``; a bare user id (a number) names no one labeler knows."""
    if isinstance(who, dict):
        who = who.get("email") or who.get("username") or None
    return who.strip() or None if isinstance(who, str) else None
