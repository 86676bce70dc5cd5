"""The issue's acceptance run, through the real manage.py in a subprocess, and the --json contract."""

from __future__ import annotations

import copy
import json
import socket
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from labeler.cli import cli

from tests.cli import ROOT, Cli, manage
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
    report = json.loads(check.stdout)  # issue 11 added the index's type and its measured recall
    assert check.returncode == 0 and (report["ok"], report["problems"], report["repaired"]) == (True, [], False)
    assert (report["index"]["type"], report["index"]["vectors"], report["recall"]) == ("flat", 480, 1.0)

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
    cli = Cli(tmp_path / "home", None)
    # read commands never create a home (issue 9): a missing one is an error until a write makes it
    assert cli("stats", "--json", expect=2) and not (tmp_path / "home").exists()
    assert cli.json("db", "upgrade")["revision"]
    stats = cli.json("stats")
    assert (stats["images"], stats["embedded"], stats["failed"], stats["missing"]) == (0, 0, 0, 0)
    assert cli.json("check")["ok"] is True


@pytest.mark.parametrize("module", sorted(p.stem for p in (ROOT / "labeler" / "commands").glob("*.py")
                                          if p.stem != "__init__"))
def test_each_command_module_imports_first(module):
    """No import circle: a command module imports on its own, before ``labeler.cli``."""
    done = subprocess.run([sys.executable, "-c", f"import labeler.commands.{module}"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def one_error_line(result, code: int) -> str:
    """The single ``error: ...`` line of a failed command, after checking its exit code."""
    assert result.exit_code == code, (result.exit_code, result.output)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def test_files_and_settings_the_user_got_wrong_exit_1_with_one_line(empty_cli, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    no_folder = empty_cli("demo-images", blocker / "out", "--count", "1", expect=None)
    assert "Not a directory" in one_error_line(no_folder, 1)
    assert "Not a directory" in one_error_line(empty_cli("export", blocker / "sub" / "labels.csv", expect=None), 1)
    latin1 = tmp_path / "latin1.csv"
    latin1.write_bytes("file,concept\ncaf\xe9.png,mug\n".encode("latin-1"))
    line = one_error_line(empty_cli("import-labels", latin1, expect=None), 2)  # issue 9: a bad CSV is exit 2
    assert "latin1.csv: not a readable UTF-8 CSV file" in line
    home_in_a_file = Cli(blocker / "home", empty_cli.model)
    assert "Not a directory" in one_error_line(home_in_a_file("stats", expect=None), 1)
    bad_setting = CliRunner(env={"LABELER_BATCH_SIZE": "lots"}).invoke(cli, ["--home", empty_cli.home, "stats"])
    assert one_error_line(bad_setting, 1) == "error: LABELER_BATCH_SIZE must be a whole number, not 'lots'"


def test_clicks_own_refusals_are_one_line_too(empty_cli, tmp_path):
    # an unknown option, a missing one, a bad choice, a path that is not there, an unknown command:
    # Click printed its usage block, a hint and a blank line before the error
    for args, said in ((("search", "hammer", "--limit", "3"), "No such option '--limit'"),
                       (("sample", "--group", "concept"), "Missing option '--count'"),
                       (("user", "add", "bob", "--role", "king"), "Invalid value for '--role'"),
                       (("index", tmp_path / "nowhere"), "does not exist"),
                       (("relabel",), "No such command 'relabel'"),
                       (("reindex", "--type", "IVFx"), "unknown index type 'IVFx'"),  # was exit 1
                       (("--nope", "stats"), "No such option '--nope'")):
        line = one_error_line(empty_cli(*args, expect=None), 2)
        assert said in line and line.endswith("--help')"), line
    # a group run without a command still shows its help (exit 2, as Click does)
    bare = empty_cli("user", expect=2)
    assert bare.stderr.startswith("Usage: ") and "add" in bare.stderr
    # and the real program, as a person runs it
    real = manage("--home", tmp_path / "home", "export", "--format", "xml", tmp_path / "x")
    assert real.returncode == 2 and real.stdout == ""
    assert real.stderr.count("\n") == 1 and real.stderr.startswith("error: Invalid value for '--format'")


def test_serving_on_a_taken_port_is_one_line(empty_cli):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = empty_cli("serve", "--port", port, expect=1)
    announced, error = result.stderr.strip().splitlines()  # "serving ... on URL", then why not
    assert error.startswith(f"error: cannot serve on 127.0.0.1:{port}: ")


def test_a_bug_keeps_its_traceback(tmp_path):
    """Only a LabelerError becomes a clean exit; anything else is a bug and must show where it is."""
    @click.command("boom")
    def boom() -> None:
        raise ValueError("a bug, not a user mistake")

    group = copy.copy(cli)
    group.commands = {**cli.commands, "boom": boom}
    result = CliRunner().invoke(group, ["--home", tmp_path / "home", "boom"])
    assert isinstance(result.exception, ValueError) and "error:" not in result.output
