"""A full disk is one clear 507 from the web, with nothing half-written (issue 21, item 7), on a
real full filesystem: the home is copied onto a small tmpfs that is then filled to its last byte.

Mounting a tmpfs needs root (this sandbox and CI run tests as root); elsewhere the test is skipped
and says why.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import func, select

from labeler.core.prompts import load_prompt_set
from labeler.store import db
from labeler.store.catalog import PromptSetRecord
from labeler.web import create_app
from tests.web.conftest import Users, login


def _bytes_under(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


@pytest.fixture
def small_disk(web_config, tmp_path):
    """``web_config``'s home copied onto a tmpfs with 8 MiB to spare; the config of that copy."""
    disk = tmp_path / "disk"
    disk.mkdir()
    size = _bytes_under(web_config.home) + 8 * 2 ** 20
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(disk)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to fill (needs root): {mounted.stderr.strip()}")
    try:
        shutil.copytree(web_config.home, disk / "home")
        yield web_config.with_(home=disk / "home")
    finally:
        db.dispose_engines()  # the app's catalog connections, before the filesystem goes
        subprocess.run(["umount", "-l", str(disk)], check=False)


def _fill(folder: Path) -> Path:
    """Write a file in ``folder`` until the filesystem has no byte left; returns it."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        for block in (b"\0" * 2 ** 20, b"\0" * 4096, b"\0"):
            while True:
                try:
                    os.write(fd, block)  # unbuffered: a partial write is kept, the next one fails
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC, exc
                    break
    finally:
        os.close(fd)
    return filler


def _lab_form(csrf: str, base: str, prompts: str) -> dict:
    return {"csrf_token": csrf, "set": "workshop", "group": "concept", "option": "hammer", "prompts": prompts,
            "strategy": "weighted", "base": base}


def _versions(config) -> int:
    with db.session_scope(config) as s:
        return s.scalar(select(func.count()).select_from(PromptSetRecord).where(PromptSetRecord.name == "workshop"))


def test_a_prompt_lab_save_on_a_full_disk_is_a_507_and_changes_nothing(small_disk):
    app = create_app(small_disk, {"TESTING": True})
    client = app.test_client()
    csrf = login(client, Users.admin)
    first = client.post("/lab/save", data=_lab_form(csrf, load_prompt_set("workshop").content_hash,
                                                    "a hammer before the disk filled"))
    assert first.status_code == 302
    saved = small_disk.home / "prompt_sets" / "workshop.yaml"
    before, versions = saved.read_bytes(), _versions(small_disk)
    files = sorted(p.name for p in saved.parent.iterdir())
    page = client.get("/lab?set=workshop&group=concept&option=hammer").get_data(as_text=True)
    base = re.search(r'name="base" value="([0-9a-f]+)"', page).group(1)

    filler = _fill(small_disk.home)
    edit = "\n".join(f"a hammer on a full disk, take {i}" for i in range(300))
    full = client.post("/lab/save", data=_lab_form(csrf, base, edit))
    body = full.get_data(as_text=True)
    assert full.status_code == 507, body[:2000]
    assert "disk full" in body and "Traceback" not in body
    assert saved.read_bytes() == before  # the saved version is whole, not truncated
    assert sorted(p.name for p in saved.parent.iterdir()) == files  # no temporary file left
    filler.unlink()
    assert _versions(small_disk) == versions  # nothing recorded for the failed save

    again = client.post("/lab/save", data=_lab_form(csrf, base, "a hammer once there is room"))
    assert again.status_code == 302  # with room again, the same edit saves
    assert _versions(small_disk) == versions + 1
