"""Export in every format and import of reviewed labels, against a real labeled collection."""

from __future__ import annotations

import csv
import json

import pytest
from sqlalchemy import select

from labeler.store.catalog import Image, Label, ReviewEvent
from labeler.labeling.bulk import label_collection
from labeler.core.prompts import load_prompt_set
from tests.conftest import WORLD_SIZE

GROUPS = sorted(load_prompt_set("workshop").groups)


@pytest.fixture
def labeled(indexed_collection):
    label_collection(indexed_collection, load_prompt_set("workshop"), "mean-score")
    with indexed_collection.session() as s:
        labels = {(l.image_id, l.group): l for l in s.scalars(select(Label))}
        paths = {i.id: i.path for i in s.scalars(select(Image))}
    return indexed_collection, labels, paths


def test_export_csv_and_jsonl(labeled, indexed_cli, tmp_path):
    collection, labels, paths = labeled
    out = indexed_cli.json("export", "--format", "csv", tmp_path / "labels.csv")
    assert out == {"format": "csv", "path": str(tmp_path / "labels.csv"), "images": WORLD_SIZE,
                   "labels": WORLD_SIZE * len(GROUPS), "duplicates": 0}
    rows = list(csv.DictReader((tmp_path / "labels.csv").open()))
    assert len(rows) == WORLD_SIZE
    assert list(rows[0])[:2 + len(GROUPS)] == ["image_id", "path", *GROUPS]
    for row in rows:
        image_id = int(row["image_id"])
        assert row["path"] == paths[image_id]
        assert row["concept"] == labels[(image_id, "concept")].value
        assert float(row["concept:confidence"]) == pytest.approx(labels[(image_id, "concept")].confidence)
        assert row["concept:status"] == "proposed"
    indexed_cli("export", "--format", "jsonl", tmp_path / "labels.jsonl")
    lines = [json.loads(line) for line in (tmp_path / "labels.jsonl").read_text().splitlines()]
    assert len(lines) == WORLD_SIZE
    first = lines[0]
    assert first["labels"]["color"]["value"] == labels[(first["image_id"], "color")].value
    assert first["path"] == paths[first["image_id"]]


def test_export_coco(labeled, indexed_cli, tmp_path):
    collection, labels, paths = labeled
    indexed_cli("export", "--format", "coco", tmp_path / "coco.json")
    data = json.loads((tmp_path / "coco.json").read_text())
    assert len(data["images"]) == WORLD_SIZE and len(data["annotations"]) == WORLD_SIZE
    categories = {c["id"]: c for c in data["categories"]}
    assert {c["supercategory"] for c in categories.values()} == {"concept"}
    for annotation in data["annotations"]:
        image_id = annotation["image_id"]
        assert categories[annotation["category_id"]]["name"] == labels[(image_id, "concept")].value
        assert annotation["score"] == pytest.approx(labels[(image_id, "concept")].confidence)
        assert annotation["attributes"]["color"] == labels[(image_id, "color")].value
        assert "concept" not in annotation["attributes"]
    # Issue 13: file names are relative to the images' common folder; the absolute path rides along.
    assert {i["path"] for i in data["images"]} == set(paths.values())
    assert all(i["path"].endswith("/" + i["file_name"]) for i in data["images"])


def test_export_label_studio(labeled, indexed_cli, tmp_path):
    collection, labels, paths = labeled
    indexed_cli("export", "--format", "labelstudio", tmp_path / "ls.json")
    tasks = json.loads((tmp_path / "ls.json").read_text())
    assert len(tasks) == WORLD_SIZE
    task = tasks[0]
    # Issue 13: data.image is Label Studio's local-files URL; the catalog's path and id ride along.
    # Issue 27: relative to the photos folder's parent, the document root (a Local Storage at the root is refused).
    folder, name = paths[task["id"]].rsplit("/", 1)
    assert task["data"]["image"] == "/data/local-files/?d=" + folder.rsplit("/", 1)[-1] + "/" + name
    assert (task["data"]["path"], task["data"]["image_id"]) == (paths[task["id"]], task["id"])
    results = {r["from_name"]: r for r in task["predictions"][0]["result"]}
    assert set(results) == set(GROUPS)
    for group, result in results.items():
        label = labels[(task["id"], group)]
        assert result["type"] == "choices" and result["to_name"] == "image"
        assert result["value"]["choices"] == [label.predicted]  # the model's answer, whatever people did
        assert result["score"] == pytest.approx(label.confidence)
    assert "annotations" not in task


def test_bad_format_is_one_clear_error(indexed_cli, tmp_path):
    assert "Invalid value for '--format'" in indexed_cli("export", "--format", "xml", tmp_path / "x", expect=2).output


def test_import_labels_accepts_and_logs_and_reports_unmatched(labeled, indexed_cli, world, tmp_path):
    collection, labels, paths = labeled
    image_ids = sorted(paths)
    source = tmp_path / "reviewed.csv"
    with source.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["image_id", "path", "concept", "color", "concept:confidence"])
        writer.writerow([image_ids[0], "", "saw", "", "0.1"])
        writer.writerow(["", paths[image_ids[1]], "mug", "red", ""])
        writer.writerow(["", "/nowhere/x.png", "ball", "", ""])
    report = indexed_cli.json("import-labels", source)
    assert report["imported"] == 3 and report["unchanged"] == 0
    assert report["groups"] == ["concept", "color"]
    assert report["unmatched"] == [{"line": 4, "ref": "/nowhere/x.png"}]
    with collection.session() as s:
        saw = s.scalar(select(Label).where(Label.image_id == image_ids[0], Label.group == "concept"))
        # Issue 13: a value other than the model's is stored as a correction.
        expected = "accepted" if saw.predicted == "saw" else "corrected"
        assert (saw.value, saw.status) == ("saw", expected)
        assert saw.predicted == labels[(image_ids[0], "concept")].predicted  # the model's proposal is kept
        events = s.scalars(select(ReviewEvent).where(ReviewEvent.action == "import")).all()
    assert len(events) == 3
    event = next(e for e in events if e.label_id == saw.id)
    assert (event.before_value, event.after_value) == (labels[(image_ids[0], "concept")].value, "saw")
    assert (event.before_status, event.after_status) == ("proposed", expected)
    again = indexed_cli.json("import-labels", source)
    assert again["imported"] == 0 and again["unchanged"] == 3
    # Imported labels are reviewed: a relabel keeps them.
    rerun = indexed_cli.json("label", "--prompt-set", "workshop", "--strategy", "max-score")
    assert rerun["kept_reviewed"] == 3


def test_import_truth_csv_by_file_name_and_roundtrip_of_export(indexed_collection, indexed_cli, world, tmp_path):
    report = indexed_cli.json("import-labels", world / "truth.csv", "--group", "concept", "--group", "color")
    assert report["imported"] == 2 * WORLD_SIZE and report["unmatched"] == []
    indexed_cli("export", "--format", "csv", tmp_path / "out.csv")
    back = indexed_cli.json("import-labels", tmp_path / "out.csv")
    assert back["groups"] == ["color", "concept"]  # the GROUP:confidence/status columns are ignored
    assert back["unchanged"] == 2 * WORLD_SIZE and back["imported"] == 0
    truth = {row["file"]: row["concept"] for row in csv.DictReader((world / "truth.csv").open())}
    exported = {row["path"].rsplit("/", 1)[-1]: row["concept"] for row in csv.DictReader((tmp_path / "out.csv").open())}
    assert exported == truth
    assert "no column for group" in indexed_cli("import-labels", world / "truth.csv", "--group", "shape",
                                                expect=2).output
    assert "no such file" in indexed_cli("import-labels", tmp_path / "missing.csv", expect=2).output
    (tmp_path / "bare.csv").write_text("name,concept\nx,saw\n")
    assert "needs a column named file, path or image_id" in indexed_cli("import-labels", tmp_path / "bare.csv",
                                                                     expect=2).output


def test_exported_proposals_never_come_back_as_reviews(labeled, indexed_cli, tmp_path):
    indexed_cli("export", "--format", "csv", tmp_path / "out.csv")
    back = indexed_cli.json("import-labels", tmp_path / "out.csv")
    assert back["imported"] == 0  # every exported value was still only the model's proposal


def test_a_path_column_matches_exactly_never_by_file_name(indexed_collection, indexed_cli, world, tmp_path):
    name = sorted(world.glob("img_*"))[0].name
    (tmp_path / "paths.csv").write_text(f"path,concept\n/nowhere/{name},saw\n")
    report = indexed_cli.json("import-labels", tmp_path / "paths.csv")
    assert report["imported"] == 0 and len(report["unmatched"]) == 1


def test_an_export_cleans_the_temporary_files_a_killed_export_left(labeled, indexed_cli, tmp_path):
    import os
    import subprocess
    import sys

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a process that no longer runs, as after a kill -9
    folder = tmp_path / "exports"
    folder.mkdir()
    out = folder / "labels.csv"
    stale = folder / f".labels.csv.{gone.pid}.140000000000.tmp"
    stale.write_text("half an export")
    live = folder / f".labels.csv.{os.getppid()}.140000000001.tmp"  # a writer still running
    live.write_text("another export in progress")
    indexed_cli("export", "--format", "csv", out)
    assert sorted(p.name for p in folder.iterdir()) == sorted([out.name, live.name])
