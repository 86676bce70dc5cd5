"""The issue's acceptance run, through the real manage.py in a subprocess, and the --json contract."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT, manage
from tests.imagegen import write_broken_corpus, write_good_images


@pytest.mark.slow
def test_500_files_with_20_broken(tmp_path, model_spec):
    photos = tmp_path / "photos"
    write_good_images(photos, 480)
    broken = write_broken_corpus(photos / "broken", copies=3)
    for path in sorted(broken)[20:]:
        __import__("os").unlink(path)
    home = ["--home", tmp_path / "home"]

    first = manage(*home, "--model", model_spec, "index", photos, "--json")
    assert first.returncode == 0, first.stderr
    report = json.loads(first.stdout)
    assert {k: report[k] for k in ("added", "unchanged", "failed", "embedded")} == \
        {"added": 480, "unchanged": 0, "failed": 20, "embedded": 480}
    assert all(f["path"] and f["reason"] for f in report["failures"])

    stats = json.loads(manage(*home, "stats", "--json").stdout)
    assert {k: stats[k] for k in ("images", "embedded", "failed", "missing", "model")} == \
        {"images": 480, "embedded": 480, "failed": 20, "missing": 0, "model": model_spec}

    # The collection remembers its model: no --model from here on.
    second = json.loads(manage(*home, "index", photos, "--json").stdout)
    assert (second["embedded"], second["unchanged"], second["failed"]) == (0, 480, 20)
    check = manage(*home, "check", "--json")
    assert check.returncode == 0 and json.loads(check.stdout) == {"ok": True, "problems": [], "repaired": False}

    hits = json.loads(manage(*home, "search", "a red object", "-k", "5", "--json").stdout)
    assert len(hits) == 5
    assert all(set(h) >= {"image_id", "path", "score"} for h in hits)
    scores = [h["score"] for h in hits]
    assert scores == sorted(scores, reverse=True)


def test_user_mistakes_are_one_line_on_stderr(tmp_path):
    home = ["--home", tmp_path / "home"]
    missing_model = manage(*home, "--model", "local-dir:/nowhere", "index", tmp_path, "--json")
    assert missing_model.returncode == 2
    assert missing_model.stdout == ""
    lines = missing_model.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:")
    assert "ARCH:/path/to/weights" in lines[0] and "local-dir:" in lines[0]

    offline = manage(*home, "--model", "ViT-B-32:laion2b_s34b_b79k", "index", tmp_path,
                     env={"HF_HUB_OFFLINE": "1"})
    assert offline.returncode == 2
    assert offline.stderr.count("\n") == 1 and "(1)" in offline.stderr and "(3)" in offline.stderr

    unknown = manage(*home, "--model", "NoSuchArch:foo", "index", tmp_path)
    assert unknown.returncode == 2 and "unknown open_clip architecture" in unknown.stderr


def test_stats_and_check_on_an_empty_home(tmp_path):
    home = ["--home", tmp_path / "home"]
    stats = json.loads(manage(*home, "stats", "--json").stdout)
    assert (stats["images"], stats["embedded"], stats["failed"], stats["missing"]) == (0, 0, 0, 0)
    assert json.loads(manage(*home, "check", "--json").stdout)["ok"] is True
    upgrade = manage(*home, "db", "upgrade", "--json")
    assert upgrade.returncode == 0 and json.loads(upgrade.stdout)["revision"]


@pytest.mark.parametrize("module", sorted(p.stem for p in (ROOT / "labeler" / "commands").glob("*.py")
                                          if p.stem != "__init__"))
def test_each_command_module_imports_first(module):
    """No import circle: a command module imports on its own, before ``labeler.cli``."""
    done = subprocess.run([sys.executable, "-c", f"import labeler.commands.{module}"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
