"""The Python API (``labeler.open``): the CLI's --json reports, returned instead of printed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import labeler
from labeler.core.prompts import PromptSetError, load_prompt_set
from labeler.errors import CatalogError, ConfigError, LabelerError

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def col(indexed_collection) -> labeler.Labeler:
    return labeler.open(indexed_collection.config.home, model=indexed_collection.config.model)


def test_each_method_returns_what_the_cli_prints_and_prints_nothing(col, indexed_cli, capfd):
    labeled = col.label("workshop", groups=["concept"])
    hits = col.search("a hammer on a workbench", k=4)
    concept = col.search_concept("concept=hammer", "workshop", k=3)
    alike = col.similar(hits[0]["image_id"], k=2)
    stats = col.stats()
    check = col.check()
    out, err = capfd.readouterr()
    assert out == "" and err == ""

    assert labeled["labeled"] == 40 and set(labeled["groups"]) == {"concept"}
    again = indexed_cli.json("label", "--prompt-set", "workshop", "--group", "concept")
    assert {k: v for k, v in again.items() if k != "seconds"} == {
        **{k: v for k, v in labeled.items() if k != "seconds"}, "inserted": 0, "unchanged": 40,
        "ranked_ahead": []}  # the group has labels now: nothing to rank before the writes
    assert hits == indexed_cli.json("search", "a hammer on a workbench", "-k", "4")
    assert concept == indexed_cli.json("search", "--concept", "concept=hammer", "--prompt-set", "workshop", "-k", "3")
    assert alike == indexed_cli.json("similar", str(hits[0]["image_id"]), "-k", "2")
    assert hits[0]["image_id"] not in {h["image_id"] for h in alike}
    assert stats == indexed_cli.json("stats")
    assert check["ok"] and check == {**indexed_cli.json("check"), "recall": check["recall"]}


def test_filters_take_a_dict_or_the_clis_strings(col):
    col.label("workshop", groups=["concept"])
    hammers = col.search("a tool", k=40, where={"concept": "hammer"})
    assert hammers and hammers == col.search("a tool", k=40, where=["concept=hammer"])
    assert len(hammers) < len(col.search("a tool", k=40))


def test_export_and_import_round_trip(col, tmp_path):
    col.label("workshop", groups=["concept"])
    exported = col.export("csv", tmp_path / "labels.csv")
    assert exported["labels"] == 40 and Path(exported["path"]).is_file()
    imported = col.import_labels(tmp_path / "labels.csv", groups=["concept"])
    assert imported["imported"] + imported["unchanged"] + sum(imported["skipped"].values()) == 40
    with pytest.raises(LabelerError, match="exists"):
        col.export("csv", tmp_path / "labels.csv")  # never overwritten without force


def test_mistakes_are_typed_errors_and_a_missing_home_is_not_created(tmp_path):
    missing = labeler.open(tmp_path / "nowhere")
    with pytest.raises(CatalogError, match="no collection"):
        missing.search("hammer")
    with pytest.raises(CatalogError):
        missing.stats()
    assert not (tmp_path / "nowhere").exists()
    with pytest.raises(ConfigError, match="batch_sise"):
        labeler.open(tmp_path, batch_sise=4)
    with pytest.raises(PromptSetError):
        missing.label(tmp_path / "no-such-set.yaml")
    assert not (tmp_path / "nowhere").exists()


def test_a_bad_query_is_refused_before_the_catalog_is_read(col):
    with pytest.raises(LabelerError):
        col.search('"hammer" +')
    with pytest.raises(LabelerError, match="QUERY"):
        col.search("")


def test_the_example_script_runs(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # this checkout's labeler, as `make` runs it
    result = subprocess.run([sys.executable, str(ROOT / "examples" / "quickstart.py"), str(tmp_path / "home")],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    groups = len(load_prompt_set("workshop").groups)  # the example labels with the shipped workshop set
    assert report["indexed"] == 24 and report["labeled"] == 24 * groups
    assert len(report["hits"]) == 5 and report["exported"]["labels"] == report["labeled"]
    assert "no reviewed labels" in report["learned"]["error"]


def test_import_labeler_stays_light():
    loaded = subprocess.run([sys.executable, "-c", "import sys, labeler; print(sorted(m for m in sys.modules "
                             "if m.split('.')[0] in ('faiss', 'torch', 'sqlalchemy', 'numpy', 'labeler')))"],
                            cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "['labeler']"
