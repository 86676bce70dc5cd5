"""import-labels streams its file (issue 21, item 10): files longer than a chunk import whole, and a
file that turns out broken or refused after chunks were written leaves nothing half-applied.

Every file here is longer than ``importing.CHUNK`` rows, so the first chunks are written inside the
import's transaction before the broken end is read; the real CLI must then exit 2 with one line and
leave every label and the review log as they were.
"""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from labeler.core.prompts import load_prompt_set
from labeler.exchange.importing import CHUNK, MAX_TASK, MAX_UNMATCHED, import_labels, read_source
from labeler.labeling.bulk import label_collection
from labeler.store.catalog import Label, ReviewEvent
from labeler.store.csvfiles import MAX_LINE, CsvError, CsvRows

WORKSHOP = load_prompt_set("workshop")
ROWS = CHUNK * 2 + 500  # three chunks


@pytest.fixture
def labeled(indexed_collection, indexed_cli):
    label_collection(indexed_collection, WORKSHOP, "mean-score")
    return indexed_collection, indexed_cli


def state(collection) -> tuple[dict, int]:
    """Every label's (value, status, version), and the number of review events."""
    with collection.session() as s:
        labels = {(l.image_id, l.group): (l.value, l.status, l.version) for l in s.scalars(select(Label))}
        return labels, s.scalar(select(func.count()).select_from(ReviewEvent))


def other_values(collection) -> list[tuple[int, str]]:
    """(image id, a concept option other than its proposal) for every image: each one a correction."""
    with collection.session() as s:
        rows = s.execute(select(Label.image_id, Label.predicted).where(Label.group == "concept")
                         .order_by(Label.image_id)).all()
    options = WORKSHOP.groups["concept"].option_names
    return [(image_id, next(o for o in options if o != predicted)) for image_id, predicted in rows]


def csv_text(pairs: list[tuple[int, str]], rows: int) -> str:
    lines = ["image_id,concept"] + [f"{pairs[n % len(pairs)][0]},{pairs[n % len(pairs)][1]}" for n in range(rows)]
    return "\n".join(lines) + "\n"


def tasks(pairs: list[tuple[int, str]], count: int) -> list[dict]:
    return [{"id": n, "data": {"image_id": pairs[n % len(pairs)][0]},
             "annotations": [{"result": [{"from_name": "concept", "to_name": "image", "type": "choices",
                                          "value": {"choices": [pairs[n % len(pairs)][1]]}}]}]}
            for n in range(count)]


def test_a_file_of_several_chunks_imports_whole_and_counts_every_row(labeled, tmp_path):
    collection, cli = labeled
    pairs = other_values(collection)
    unmatched = MAX_UNMATCHED + 37
    source = tmp_path / "long.csv"
    source.write_text("image_id,path,concept\n" + "".join(
        f"{pairs[n % len(pairs)][0]},,{pairs[n % len(pairs)][1]}\n" for n in range(ROWS))
        + "".join(f",/nowhere/{n}.png,saw\n" for n in range(unmatched)))
    report = cli.json("import-labels", source)
    assert report["rows"] == ROWS + unmatched
    assert report["imported"] == report["corrected"] == len(pairs)
    assert report["unchanged"] == ROWS - len(pairs)  # a later chunk sees what an earlier one wrote
    assert report["unmatched_count"] == unmatched and len(report["unmatched"]) == MAX_UNMATCHED
    assert report["unmatched"][0] == {"line": ROWS + 2, "ref": "/nowhere/0.png"}
    labels, events = state(collection)
    assert all(labels[(image_id, "concept")][:2] == (value, "corrected") for image_id, value in pairs)
    assert events == len(pairs)

    export = tmp_path / "tasks.json"
    export.write_text(json.dumps(tasks(pairs, ROWS)))
    again = cli.json("import-labels", export)
    assert again["format"] == "labelstudio" and again["rows"] == ROWS
    assert again["unchanged"] == ROWS and again["imported"] == 0

    sizes, steps = [], []  # progress: the file's size first, then the bytes read, chunk by chunk
    import_labels(collection, source, progress=steps.append, total=sizes.append)
    assert sizes == [source.stat().st_size] and sum(steps) == sizes[0] and len(steps) >= 3


def _cut_csv(pairs):
    return (csv_text(pairs, ROWS) + f'{pairs[0][0]},"{pairs[0][1]}').encode()


def _cut_in_a_character(pairs):
    return csv_text(pairs, ROWS).encode() + f"{pairs[0][0]},caf".encode() + "é".encode()[:1]


def _latin1_at_the_end(pairs):
    return csv_text(pairs, ROWS).encode() + f"{pairs[0][0]},caf\xe9\n".encode("latin-1")


def _unknown_value_at_the_end(pairs):
    return (csv_text(pairs, ROWS) + f"{pairs[0][0]},spaceship\n").encode()


def _json_cut(pairs):
    text = json.dumps(tasks(pairs, ROWS))
    return text[:len(text) - 40].encode()


def _json_not_a_task_at_the_end(pairs):
    return (json.dumps(tasks(pairs, ROWS))[:-1] + ", 5]").encode()


@pytest.mark.parametrize("make, suffix, message", [
    (_cut_csv, ".csv", "ends inside a quoted field"),
    (_cut_in_a_character, ".csv", "ends inside a character"),
    (_latin1_at_the_end, ".csv", f"line {ROWS + 2}; save it as UTF-8"),
    (_unknown_value_at_the_end, ".csv", "'spaceship' not in prompt set workshop"),
    (_json_cut, ".json", "cut off"),
    (_json_not_a_task_at_the_end, ".json", "a list of tasks, each with data"),
], ids=["csv-cut-in-quotes", "csv-cut-in-a-character", "csv-latin1-last-line", "unknown-value-last-line",
        "json-cut", "json-not-a-task"])
def test_a_file_broken_after_the_first_chunks_is_one_line_exit_2_and_nothing_applied(labeled, tmp_path, make,
                                                                                     suffix, message):
    collection, cli = labeled
    before = state(collection)
    source = tmp_path / f"broken{suffix}"
    source.write_bytes(make(other_values(collection)))
    result = cli("import-labels", source, expect=2)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr
    assert state(collection) == before  # the chunks already written were rolled back


def test_a_csv_line_is_read_up_to_max_line_bytes_and_refused_past_it(tmp_path):
    header = "image_id,concept\n"
    at_limit = "1," + "a," * ((MAX_LINE - len("1,") - 2) // 2)
    at_limit += "a" * (MAX_LINE - 1 - len(at_limit)) + "\n"  # exactly MAX_LINE bytes with its line end
    assert len(at_limit.encode()) == MAX_LINE
    path = tmp_path / "wide.csv"
    path.write_text(header + at_limit)
    [(line, row)] = list(CsvRows(path))
    assert line == 2 and row["concept"] == "a"
    path.write_text(header + "1," + "a," * (MAX_LINE // 2) + "\n")
    with pytest.raises(CsvError, match="line 2 is longer than 16 MiB; not a label CSV"):
        list(CsvRows(path))


def test_a_label_studio_task_past_max_task_characters_is_refused(tmp_path):
    path = tmp_path / "tasks.json"
    task = {"id": 1, "data": {"image_id": 1, "note": "x" * (MAX_TASK + 10)}, "annotations": []}
    path.write_text(json.dumps([task, task]))
    with pytest.raises(CsvError, match="task 1 is longer than 16 M characters or is broken JSON"):
        read_source(path)
    empty = json.dumps({**task, "data": {"image_id": 1, "note": ""}})
    at_limit = {**task, "data": {"image_id": 1, "note": "x" * (MAX_TASK - len(empty))}}
    assert len(json.dumps(at_limit)) == MAX_TASK
    path.write_text(json.dumps([at_limit] * 2))
    assert len(list(read_source(path).rows())) == 2
