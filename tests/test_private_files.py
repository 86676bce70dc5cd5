"""What a failed or first write leaves: files 0600 and folders 0700 unless LABELER_UMASK says
otherwise, and a secret key that is whole, never empty, and replaced with a log line if it was."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import pytest

from labeler.config import Config
from tests.cli import manage
from tests.imagegen import write_good_images


def _modes(home: Path) -> dict[str, set[int]]:
    """The permission bits of every folder and file under ``home`` (``home`` itself included)."""
    folders, files = {stat.S_IMODE(home.stat().st_mode)}, set()
    for path in home.rglob("*"):
        (folders if path.is_dir() else files).add(stat.S_IMODE(path.stat().st_mode))
    return {"folders": folders, "files": files}


@pytest.mark.parametrize("umask,folder,file", [(None, 0o700, 0o600), ("022", 0o755, 0o644)])
def test_a_new_home_is_private_unless_the_umask_says_otherwise(tmp_path, model_spec, umask, folder, file):
    photos = tmp_path / "photos"
    write_good_images(photos, 3, seed=31)
    home = tmp_path / "home"
    env = {"LABELER_UMASK": umask} if umask else {}
    manage("--home", home, "--model", model_spec, "index", photos, env=env, expect=0)
    manage("--home", home, "user", "add", "ada", "--password-stdin", stdin="correct horse battery\n", env=env,
           expect=0)
    assert (home / "catalog.db").exists() and list((home / "thumbnails").rglob("*.jpg"))
    assert list((home / "indexes").iterdir())
    assert _modes(home) == {"folders": {folder}, "files": {file}}


def test_a_umask_that_is_not_octal_is_one_line():
    from labeler.errors import ConfigError

    assert Config.from_env({"LABELER_UMASK": "027"}).umask == 0o027
    for bad in ("rwx", "999", "-1"):
        with pytest.raises(ConfigError, match="LABELER_UMASK must be an octal mask"):
            Config.from_env({"LABELER_UMASK": bad})


def test_an_empty_secret_key_is_replaced_and_the_log_says_sessions_ended(tmp_path, caplog):
    from labeler.web import load_secret_key

    config = Config(home=tmp_path / "h")
    config.home.mkdir()
    (config.home / "secret_key").write_text("")  # what a start on a full disk used to leave
    lines: list[str] = []
    key = load_secret_key(config, log=lines.append)
    assert len(key) == 64 and (config.home / "secret_key").read_text() == key
    assert len(lines) == 1 and "every session signed with the old one has ended" in lines[0]
    assert load_secret_key(config, log=lines.append) == key and len(lines) == 1  # kept from now on
    assert sorted(p.name for p in config.home.iterdir()) == [".secret_key.lock", "secret_key"]  # no .tmp left
    assert stat.S_IMODE((config.home / "secret_key").stat().st_mode) == 0o600

    from labeler.web import create_app

    (config.home / "secret_key").write_text("  \n")
    with caplog.at_level(logging.WARNING, logger="labeler"):
        app = create_app(Config(home=config.home))  # no catalog needed to make the key
    assert app.config["SECRET_KEY"] not in ("", key)
    assert "must log in again" in caplog.text
    assert os.environ.get("LABELER_SECRET_KEY") is None


SERVE_ON_A_FULL_DISK = """
set -e
mount -t tmpfs -o size=64k tmpfs "$DISK"
mkdir "$DISK/home"
head -c 10000000 /dev/zero > "$DISK/fill" 2>/dev/null || true
set +e
"$@" > "$OUT/serve.out" 2> "$OUT/serve.err"; echo $? > "$OUT/serve.rc"
ls -A "$DISK/home" > "$OUT/left"
"""


def test_serve_on_a_full_disk_is_one_line_and_leaves_no_empty_key(tmp_path):
    import subprocess

    from tests.cli import manage_argv
    from tests.test_bad_files import _in_private_tmpfs

    prefix = _in_private_tmpfs()
    if prefix is None:
        pytest.skip("no mount namespace here: a small tmpfs cannot be made to fill")
    disk = tmp_path / "disk"
    disk.mkdir()
    argv = manage_argv("--home", disk / "home", "serve", "--port", "1")  # never reached: the key comes first
    subprocess.run([*prefix, "sh", "-c", SERVE_ON_A_FULL_DISK, "sh", *argv], check=True, timeout=120,
                   env={**os.environ, "DISK": str(disk), "OUT": str(tmp_path)})
    assert (tmp_path / "serve.rc").read_text().strip() == "1"
    assert (tmp_path / "serve.err").read_text().strip() == ("error: disk full (No space left on device): what was "
                                                            "already saved is kept; free some space and run it again")
    assert "secret_key" not in (tmp_path / "left").read_text().split()  # no empty key for the next start
