"""Exports each ecosystem loads with no glue code, tested against the real clients (issue 27):
Hugging Face ``datasets``, pycocotools' COCOeval, pandas.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from sqlalchemy import select

from labeler.core.prompts import load_prompt_set
from labeler.labeling.bulk import label_collection
from labeler.review import decisions as review
from labeler.store.catalog import Label
from tests.cli import Cli

WORKSHOP = load_prompt_set("workshop")
CONCEPT = WORKSHOP.groups["concept"].option_names + (
    [WORKSHOP.groups["concept"].none_name] if WORKSHOP.groups["concept"].none_name else [])


@pytest.fixture
def labeled(indexed_collection, indexed_cli):
    label_collection(indexed_collection, WORKSHOP, "mean-score")
    return indexed_collection, indexed_cli


def review_some(collection, group: str = "concept", count: int = 24) -> list[Label]:
    """A reviewer accepts two of every three proposals and corrects the third to another option."""
    with collection.session() as s:
        labels = s.scalars(select(Label).where(Label.group == group, Label.predicted.is_not(None))
                           .order_by(Label.id)).all()[:count]
        options = WORKSHOP.groups[group].option_names
        for i, label in enumerate(labels):
            if i % 3 == 2:
                other = options[(options.index(label.predicted) + 1 + i) % len(options)] \
                    if label.predicted in options else options[0]
                if other == label.predicted:
                    other = options[(options.index(other) + 1) % len(options)]
                review.decide(s, label.id, "correct", None, label.version, other)
            else:
                review.decide(s, label.id, "accept", None, label.version)
        return labels


# -- COCO ---------------------------------------------------------------------------------

def test_coco_has_no_segmentation_unless_asked(labeled, tmp_path):
    from pycocotools.coco import COCO

    _, cli = labeled
    cli("export", "--format", "coco", "--group", "concept", tmp_path / "plain.json")
    cli("export", "--format", "coco", "--group", "concept", "--coco-segmentation", tmp_path / "masks.json")
    plain, masks = (json.loads((tmp_path / name).read_text()) for name in ("plain.json", "masks.json"))
    assert plain["annotations"] and all("segmentation" not in a for a in plain["annotations"])
    assert all(a["segmentation"] == [[0, 0, a["bbox"][2], 0, a["bbox"][2], a["bbox"][3], 0, a["bbox"][3]]]
               for a in masks["annotations"])
    for name in ("plain.json", "masks.json"):
        assert len(COCO(str(tmp_path / name)).getAnnIds()) == len(plain["annotations"])


def test_cocoeval_of_split_predictions_gives_evaluates_accuracy(labeled, tmp_path):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    collection, cli = labeled
    reviewed = review_some(collection)
    out = tmp_path / "truth.json"
    report = cli.json("export", "--format", "coco", "--group", "concept", "--split-predictions", out)
    assert report["predictions"] == str(tmp_path / "truth.predictions.json")

    # The README's command, as is: ground truth, the model's results, COCOeval.
    gt = COCO(str(out))
    dt = gt.loadRes(str(tmp_path / "truth.predictions.json"))
    evaluation = COCOeval(gt, dt, "bbox")
    evaluation.evaluate()
    evaluation.accumulate()
    evaluation.summarize()

    assert len(gt.imgs) == len(reviewed) and len(gt.anns) == len(reviewed)
    assert all("segmentation" not in a for a in gt.anns.values())
    ours = cli.json("evaluate", "--prompt-set", "workshop", "--reviewed", "--group", "concept",
                    "--strategy", "mean-score")["concept"]["mean-score"]
    assert ours["n"] == len(reviewed) and 0 < ours["accuracy"] < 1  # the test can fail both ways
    names = {c["id"]: c["name"] for c in gt.dataset["categories"]}
    recall = evaluation.eval["recall"][0, :, 0, -1]  # IoU 0.5, all areas, 100 detections; per category
    for k, category_id in enumerate(evaluation.params.catIds):
        if names[category_id] in ours["per_option"]:
            assert recall[k] == pytest.approx(ours["per_option"][names[category_id]], abs=1e-4), names[category_id]
        else:
            assert recall[k] == -1  # no reviewed image of that option
    # Average recall (AR@100) is the mean of evaluate's per-option accuracy: the balanced accuracy.
    assert evaluation.stats[8] == pytest.approx(np.mean(list(ours["per_option"].values())), abs=1e-4)
    # and the overall accuracy is the per-option recall weighted by COCO's own ground-truth counts
    counts = {names[c]: len(gt.getAnnIds(catIds=[c])) for c in evaluation.params.catIds}
    weighted = sum(ours["per_option"][n] * counts[n] for n in ours["per_option"]) / len(gt.anns)
    assert weighted == pytest.approx(ours["accuracy"], abs=1e-3)


def test_split_predictions_is_for_coco_only(labeled, tmp_path):
    _, cli = labeled
    result = cli("export", "--format", "csv", "--split-predictions", tmp_path / "x.csv", expect=2)
    assert "--split-predictions applies to --format coco only" in result.output
    assert not (tmp_path / "x.csv").exists()


# -- CSV and JSONL in data tools ----------------------------------------------------------

def test_csv_without_the_formula_guard_reads_as_is_in_pandas(labeled, tmp_path):
    pandas = pytest.importorskip("pandas")
    collection, cli = labeled
    with collection.session() as s:
        label = s.scalars(select(Label).where(Label.group == "concept").order_by(Label.id)).first()
        review.decide(s, label.id, "correct", None, label.version, "@home")
        image_id = label.image_id
    cli("export", "--format", "csv", tmp_path / "guarded.csv")
    cli("export", "--format", "csv", "--no-formula-guard", tmp_path / "plain.csv")
    guarded = pandas.read_csv(tmp_path / "guarded.csv").set_index("image_id")
    plain = pandas.read_csv(tmp_path / "plain.csv").set_index("image_id")
    assert guarded.loc[image_id, "concept"] == "'@home"  # for spreadsheets
    assert plain.loc[image_id, "concept"] == "@home"  # for data tools
    assert list(plain.columns) == list(guarded.columns) and len(plain) == len(guarded)


def test_jsonl_score_list_has_one_fixed_order(labeled, tmp_path):
    pandas = pytest.importorskip("pandas")
    _, cli = labeled
    report = cli.json("export", "--format", "jsonl", tmp_path / "labels.jsonl")
    assert report["score_order"]["concept"][:len(CONCEPT)] == CONCEPT  # the prompt set's order
    lines = [json.loads(x) for x in (tmp_path / "labels.jsonl").read_text().splitlines()]
    for line in lines:
        for group, label in line["labels"].items():
            order = report["score_order"][group]
            assert len(label["score_list"]) == len(order)
            for name, confidence in zip(order, label["score_list"]):
                named = label["scores"].get(name)
                assert confidence == (named["confidence"] if named else None)
    # one column per option, the same for every row, straight from the list
    frame = pandas.DataFrame([line["labels"]["concept"]["score_list"] for line in lines],
                             columns=report["score_order"]["concept"])
    assert frame.shape == (len(lines), len(report["score_order"]["concept"]))
    assert np.allclose(frame[CONCEPT[:len(WORKSHOP.groups["concept"].option_names)]].sum(axis=1), 1.0, atol=1e-3)


# -- Hugging Face datasets ----------------------------------------------------------------

@pytest.fixture
def small_collection(world, model_spec, tmp_path):
    """A dozen world photos, in a folder of their own (the export writes into it), labeled and half reviewed."""
    photos = tmp_path / "photos"
    (photos / "sub").mkdir(parents=True)
    for i, path in enumerate(sorted(world.glob("img_*.*"))[:12]):
        shutil.copy(path, (photos / "sub" if i % 2 else photos) / path.name)
    cli = Cli(tmp_path / "home", model_spec)
    cli("index", photos)
    cli("label", "--prompt-set", "workshop")
    return cli, photos


def test_hf_export_loads_in_datasets_with_classlabels_in_prompt_set_order(small_collection, tmp_path):
    datasets = pytest.importorskip("datasets")
    cli, photos = small_collection
    report = cli.json("export", "--format", "hf", photos)
    assert report["metadata"] == str(photos / "metadata.parquet") and report["images"] == 12
    import pyarrow.parquet as pq

    table = pq.read_table(photos / "metadata.parquet").to_pylist()
    names = json.loads((photos / "dataset_info.json").read_text())["features"]

    def named(column: str, value):  # a ClassLabel column holds class ids
        feature = names.get(column, {})
        return feature["names"][value] if feature.get("_type") == "ClassLabel" and value is not None else value

    rows = [{k: named(k, v) for k, v in row.items()} for row in table]
    assert all(not row["file_name"].startswith(("/", "..")) for row in rows)
    assert any(row["file_name"].startswith("sub/") for row in rows)

    loaded = datasets.load_dataset(str(photos), split="train", cache_dir=str(tmp_path / "hf-cache"))
    assert len(loaded) == 12
    for group, spec in WORKSHOP.groups.items():
        feature = loaded.features[group]
        assert isinstance(feature, datasets.ClassLabel)
        names = spec.option_names + ([spec.none_name] if spec.none_name else [])
        assert feature.names[:len(names)] == names, group  # not alphabetical
        assert isinstance(loaded.features[f"{group}_predicted"], datasets.ClassLabel)
    by_id = {row["image_id"]: row for row in rows}
    for example in loaded:
        row = by_id[example["image_id"]]
        for group in WORKSHOP.groups:
            value = example[group]
            assert (loaded.features[group].int2str(value) if value is not None else None) == row[group]
        assert example["image"].size[0] > 0  # the image itself, found from file_name

    # imagefolder named with data_dir, as is: the features come from metadata.parquet's schema
    named_builder = datasets.load_dataset("imagefolder", data_dir=str(photos), split="train",
                                          cache_dir=str(tmp_path / "hf-cache-3"))
    assert named_builder.features == loaded.features and len(named_builder) == 12
    assert named_builder.features["concept"].names[:len(WORKSHOP.groups["concept"].option_names)] == \
        WORKSHOP.groups["concept"].option_names

    # and with the declared features given, for those who pass them
    info = json.loads((photos / "dataset_info.json").read_text())
    explicit = datasets.load_dataset("imagefolder", data_dir=str(photos), split="train",
                                     features=datasets.Features.from_dict(info["features"]),
                                     cache_dir=str(tmp_path / "hf-cache-2"))
    assert explicit.features == loaded.features and len(explicit) == 12


def test_hf_export_refuses_a_folder_that_does_not_hold_the_images(small_collection, tmp_path):
    cli, photos = small_collection
    result = cli("export", "--format", "hf", photos / "sub", expect=2)
    assert "is not under" in result.output and "a folder that holds every image" in result.output
    assert not (photos / "sub" / "metadata.parquet").exists()
    (photos / "README.md").write_text("my own notes\n")
    result = cli("export", "--format", "hf", photos, expect=2)
    assert "README.md exists; pass --force" in result.output
    assert (photos / "README.md").read_text() == "my own notes\n"



def test_hf_export_replaces_an_older_metadata_jsonl_only_with_force(small_collection):
    # imagefolder refuses a folder with two metadata formats, so an earlier export's JSONL must go
    cli, photos = small_collection
    (photos / "metadata.jsonl").write_text('{"file_name": "x.png"}\n')
    result = cli("export", "--format", "hf", photos, expect=2)
    assert "metadata.jsonl" in result.output and not (photos / "metadata.parquet").exists()
    cli("export", "--format", "hf", photos, "--force")
    assert (photos / "metadata.parquet").exists() and not (photos / "metadata.jsonl").exists()
