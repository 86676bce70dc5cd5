"""Bad input on the command line: one ``error: ...`` line and exit 2, no traceback, nothing created.

Missing and read-only homes, and prompt sets that are huge, hold a NUL byte or nest thousands deep.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import time
from pathlib import Path

import pytest

from labeler.store import db
from labeler.core.prompts import MAX_BYTES, load_prompt_set
from tests.cli import ROOT, Cli, manage_argv
from tests.test_cli_contract import one_error_line

READ_COMMANDS = [("stats",), ("check",), ("search", "a red object"), ("similar", "1")]


@pytest.mark.parametrize("command", READ_COMMANDS, ids=lambda c: c[0])
def test_a_read_command_on_a_missing_home_says_so_and_creates_nothing(tmp_path, model_spec, command):
    missing = Cli(tmp_path / "nonexistent" / "deep", model_spec)
    line = one_error_line(missing(*command, expect=None), 2)
    assert f"no collection at {tmp_path / 'nonexistent' / 'deep'}" in line
    assert not (tmp_path / "nonexistent").exists()

    empty_folder = Cli(tmp_path / "empty", model_spec)
    (tmp_path / "empty").mkdir()
    assert "holds no catalog.db" in one_error_line(empty_folder(*command, expect=None), 2)
    assert list((tmp_path / "empty").iterdir()) == []


def _without_root_powers() -> list[str]:
    """A command prefix that makes file permissions bind: root ignores them unless it drops
    CAP_DAC_OVERRIDE (``setpriv``); anyone else needs nothing."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: a read-only folder cannot be made to bind")
    return ["setpriv", "--bounding-set", "-dac_override,-dac_read_search"]


def test_a_read_only_home_is_one_line_even_for_stats(indexed_collection, model_spec):
    home = indexed_collection.config.home
    db.dispose_engines()  # fold the WAL back so the folder holds only the catalog
    for leftover in home.glob("catalog.db-*"):
        leftover.unlink()
    before = sorted(p.name for p in home.iterdir())
    home.chmod(stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
    try:
        for command in (["stats"], ["search", "a red object"], ["index", str(home)]):
            done = subprocess.run([*_without_root_powers(), *manage_argv("--home", home, "--model", model_spec,
                                                                          *command)],
                                  cwd=ROOT, capture_output=True, text=True, timeout=300)
            lines = done.stderr.strip().splitlines()
            assert done.returncode == 2, done.stderr[-2000:]
            assert len(lines) == 1 and lines[0] == f"error: {home} is read-only: labeler needs to write its " \
                                                   "catalog there (SQLite's journal too, even to read); " \
                                                   "give a writable --home", done.stderr[-2000:]
    finally:
        home.chmod(0o755)
    assert sorted(p.name for p in home.iterdir()) == before


def _prompt_set(path: Path, tail: str = "", groups: str | None = None) -> Path:
    groups = groups or "\n  g:\n    options:\n      a: {prompts: [a thing]}\n      b: {prompts: [b thing]}"
    path.write_text(f"name: bad\nversion: 1\ngroups:{groups}\n{tail}", encoding="utf-8")
    return path


def test_a_prompt_set_with_a_nul_byte_is_one_line(empty_cli, tmp_path):
    bad = _prompt_set(tmp_path / "nul.yaml", tail="# a comment\x00 with a NUL\n")
    line = one_error_line(empty_cli("label", "--prompt-set", bad, expect=None), 2)
    assert line == f"error: {bad}: line 8: a NUL byte; a prompt set is plain text"
    assert not empty_cli.home.exists()


@pytest.mark.parametrize("opener,closer", [("[", "]"), ("{a: ", "}")], ids=["lists", "mappings"])
def test_a_prompt_set_nested_20000_deep_is_one_line(empty_cli, tmp_path, opener, closer):
    bad = _prompt_set(tmp_path / "deep.yaml", groups=" " + opener * 20_000 + "1" + closer * 20_000)
    line = one_error_line(empty_cli("label", "--prompt-set", bad, expect=None), 2)
    assert "nested more than 32 levels deep" in line
    assert not empty_cli.home.exists()


def test_a_prompt_set_over_1_mb_is_refused_at_once(empty_cli, tmp_path):
    comment = "# " + "padding " * 1000 + "\n"
    bad = _prompt_set(tmp_path / "big.yaml", tail=comment * (50 * MAX_BYTES // len(comment)))  # 50 MB
    started = time.monotonic()
    line = one_error_line(empty_cli("label", "--prompt-set", bad, expect=None), 2)
    assert time.monotonic() - started < 5
    assert line == f"error: {bad}: larger than 1 MB; a prompt set is a small text file"
    fits = _prompt_set(tmp_path / "fits.yaml", tail=comment * (MAX_BYTES // len(comment) - 1))
    assert fits.stat().st_size <= MAX_BYTES
    assert load_prompt_set(fits).name == "bad"  # just under the cap still loads


def test_a_prompt_over_the_length_limit_is_one_line_and_labels_nothing(indexed_cli, tmp_path):
    long_prompt = "a photo of " + "a" * 389  # 400 characters: at the limit
    fits = _prompt_set(tmp_path / "fits.yaml",
                       groups=f"\n  g:\n    options:\n      a: {{prompts: [{long_prompt}]}}\n      b: {{prompts: [b thing]}}")
    indexed_cli("label", "--prompt-set", fits)
    over = _prompt_set(tmp_path / "over.yaml",
                       groups=f"\n  h:\n    options:\n      a: {{prompts: [{long_prompt}b]}}\n      b: {{prompts: [b thing]}}")
    line = one_error_line(indexed_cli("label", "--prompt-set", over, expect=None), 2)
    assert line == (f"error: {over}: groups.h.options.a: a prompt of 401 characters; the limit is 400 "
                    "(LABELER_MAX_PROMPT_CHARS)")
    from labeler.config import Config
    from labeler.store.catalog import Label

    with db.session_scope(Config(home=indexed_cli.home)) as s:
        groups = {group for (group,) in s.query(Label.group).distinct()}
    assert groups == {"g"}  # the set at the limit labeled; the one over it wrote nothing


def _alias_bomb(path: Path, options: int, prompts: int = 1000) -> Path:
    """A small YAML file whose options all alias one list of ``prompts`` prompts."""
    listed = ", ".join(f"p{i}" for i in range(prompts))
    lines = [f"name: bomb\nversion: 1\nx-prompts: &a [{listed}]\ngroups:\n  g:\n    options:"]
    lines += [f"      o{i}: {{prompts: *a}}" for i in range(options)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_a_prompt_set_that_aliases_a_list_thousands_of_times_is_refused_before_checking(empty_cli, tmp_path):
    from labeler.core.prompts import MAX_PROMPTS, PromptSetError

    bomb = _alias_bomb(tmp_path / "bomb.yaml", options=10_000)  # 270 KB that expands to 10 million prompts
    assert bomb.stat().st_size < 300_000
    line = one_error_line(empty_cli("label", "--prompt-set", bomb, expect=None), 2)
    assert line == (f"error: {bomb}: expands to more than 100,000 prompts, the limit "
                    "(YAML aliases can repeat one list many times)")
    at_limit = _alias_bomb(tmp_path / "at.yaml", options=MAX_PROMPTS // 1000)
    with pytest.raises(PromptSetError) as refused:  # checked, not refused for its size: x-prompts is unknown
        load_prompt_set(at_limit)
    assert "expands to" not in str(refused.value) and "x-prompts: unknown key" in str(refused.value)
