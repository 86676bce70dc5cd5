"""Evaluation: truth matching, metrics, the JSON contract, the written table and plot."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image as PILImage

from labeler.core import scoring
from tests.conftest import WORLD_SIZE
from labeler.labeling.evaluate import evaluate, group_metrics, truth_from_csv, write_outputs
from labeler.core.prompts import load_prompt_set
from labeler.collection import in_session


def test_group_metrics_by_hand():
    names = ["cat", "dog"]
    confidence = np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.2, 0.8]])
    decision = scoring.decide(confidence, none_threshold=0.65)  # image 1 (0.6) becomes none
    truth = ["cat", "dog", "dog", "none"]
    m = group_metrics(names, "none", confidence, decision.choice, decision.confidence, truth)
    # answers: cat, none, dog, dog → right: yes, no, yes, no
    assert m["accuracy"] == 0.5
    assert m["per_option"] == {"cat": 1.0, "dog": 0.5, "none": 0.0}
    assert m["mean_true_confidence"] == pytest.approx((0.9 + 0.4 + 0.7) / 3, abs=1e-4)
    expected_ece = scoring.expected_calibration_error(np.array([0.9, 0.6, 0.7, 0.8]),
                                                      np.array([True, False, True, False]))
    assert m["ece"] == pytest.approx(expected_ece, abs=1e-4)


def test_truth_rows_match_by_file_path_and_image_id(indexed_collection, world, tmp_path):
    ids, _ = in_session(indexed_collection.vectors.read)
    rows = list(csv.DictReader((world / "truth.csv").open()))
    # A copy elsewhere, with an absolute path, an image_id and a row for no image.
    other = tmp_path / "elsewhere" / "truth.csv"
    other.parent.mkdir()
    with other.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["file", "path", "image_id", "concept"])
        writer.writeheader()
        writer.writerow({"file": "", "path": str(world / rows[0]["file"]), "image_id": "", "concept": "hammer"})
        writer.writerow({"file": rows[1]["file"], "path": "", "image_id": "", "concept": "saw"})
        writer.writerow({"file": "", "path": "", "image_id": str(ids[2]), "concept": "mug"})
        writer.writerow({"file": "no_such.png", "path": "", "image_id": "", "concept": "mug"})
    truth = truth_from_csv(indexed_collection, other, ["concept", "color"])
    assert sorted(truth.values["concept"].values()) == ["hammer", "mug", "saw"]
    assert truth.values["concept"][int(ids[2])] == "mug"
    assert truth.unmatched == ["no_such.png"]
    assert "color" not in truth.values


def test_evaluate_cli_json_table_and_plot(indexed_cli, world, tmp_path):
    out = tmp_path / "report"
    data = indexed_cli.json("evaluate", "--prompt-set", "workshop", "--truth", world / "truth.csv", "--out", out)
    prompt_set = load_prompt_set("workshop")
    assert set(data) == set(prompt_set.groups)
    truth_rows = list(csv.DictReader((world / "truth.csv").open()))
    assert len(truth_rows) == WORLD_SIZE
    for group, by_strategy in data.items():
        assert set(by_strategy) == set(scoring.STRATEGIES)
        for metrics in by_strategy.values():
            assert set(metrics) >= {"accuracy", "mean_true_confidence", "ece", "per_option"}
            assert 0 <= metrics["accuracy"] <= 1 and 0 <= metrics["ece"] <= 1
            # every image has a truth value, but orientation is empty for the round household objects
            assert metrics["n"] == sum(1 for r in truth_rows if r[group])
            assert set(metrics["per_option"]) <= set(prompt_set.groups[group].option_names)
    saved = json.loads((out / "evaluation.json").read_text())
    assert saved["concept"]["single"]["accuracy"] == data["concept"]["single"]["accuracy"]
    rows = list(csv.DictReader((out / "evaluation.csv").open()))
    assert len(rows) == len(prompt_set.groups) * len(scoring.STRATEGIES)
    assert {"group", "strategy", "accuracy", "mean_true_confidence", "ece"} <= set(rows[0])
    with PILImage.open(out / "evaluation.png") as png:
        assert png.format == "PNG" and png.width > 500
    table = indexed_cli("evaluate", "--prompt-set", "workshop", "--truth", world / "truth.csv",
                    "--strategy", "single", "--strategy", "weighted").output
    assert "concept" in table and "weighted" in table and "mean-score" not in table


def test_evaluate_on_reviewed_labels(indexed_cli, world):
    assert "exactly one of" in indexed_cli("evaluate", "--prompt-set", "workshop", expect=2).output
    assert "no truth for any group" in indexed_cli("evaluate", "--prompt-set", "workshop", "--reviewed",
                                                   expect=2).output
    indexed_cli("import-labels", world / "truth.csv", "--group", "concept")
    data = indexed_cli.json("evaluate", "--prompt-set", "workshop", "--reviewed", "--strategy", "single")
    assert list(data) == ["concept"] and data["concept"]["single"]["n"] == WORLD_SIZE
    # The same truth from the CSV gives the same numbers.
    same = indexed_cli.json("evaluate", "--prompt-set", "workshop", "--truth", world / "truth.csv",
                        "--strategy", "single")
    assert same["concept"] == data["concept"]


@pytest.mark.slow
def test_ensembles_beat_single_on_labeler_tiny(tmp_path):
    """The study's before/after on the demo model: the ensemble lifts confidence on the true concept."""
    spec = "labeler-tiny"
    from labeler.collection import Collection
    from labeler.config import Config
    from labeler.ingest.run import index_paths
    from labeler.demo_world import generate_world

    truth_csv = generate_world(tmp_path / "world", 300, seed=12345)  # never the training world
    collection = Collection(Config(home=tmp_path / "home", model=spec))
    index_paths(collection, [tmp_path / "world"])
    prompt_set = load_prompt_set("workshop")
    results = evaluate(collection, prompt_set, truth_from_csv(collection, truth_csv, list(prompt_set.groups)))
    concept = results["concept"]
    single, ensemble = concept["single"], concept["mean-embedding"]
    assert ensemble["mean_true_confidence"] > single["mean_true_confidence"], concept
    assert ensemble["ece"] < single["ece"], concept
    # Where one plain prompt is ambiguous (a handle is not a thing), every ensemble wins outright.
    handle = results["handle"]
    for strategy in ("mean-embedding", "mean-score", "max-score", "weighted"):
        assert handle[strategy]["accuracy"] > handle["single"]["accuracy"] + 0.1, handle
    write_outputs(results, tmp_path / "report")
    assert (tmp_path / "report" / "evaluation.png").stat().st_size > 0


def test_an_unreadable_truth_file_or_output_folder_is_one_line(indexed_cli, world, tmp_path):
    latin1 = tmp_path / "latin1.csv"
    latin1.write_bytes("file,concept\ncaf\xe9.png,mug\n".encode("latin-1"))
    bad_csv = indexed_cli("evaluate", "--prompt-set", "workshop", "--truth", latin1, expect=2)  # issue 9: exit 2
    assert bad_csv.stderr.startswith(f"error: {latin1}: not a readable UTF-8 CSV file")
    assert bad_csv.stderr.count("\n") == 1
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    bad_out = indexed_cli("evaluate", "--prompt-set", "workshop", "--truth", world / "truth.csv",
                          "--strategy", "single", "--out", blocker / "out", expect=1)
    assert "Not a directory" in bad_out.stderr and bad_out.stderr.count("\n") == 1
