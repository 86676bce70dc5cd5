"""kill -9 during embedding, then a rerun: nothing corrupt, every image embedded exactly once.

The index is saved only now and then (a quarter of it unsaved), so at the kill the file is
behind the catalog: opening it replays exactly the vectors committed after its last save.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import time

import pytest

from labeler.collection import Collection, in_session
from labeler.config import Config
from labeler.vectors.index import read_stamp
from tests.cli import ROOT, manage_argv
from tests.imagegen import write_good_images


def _embedded(db_path) -> int:
    try:
        with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=1) as conn:
            return conn.execute("SELECT count(*) FROM embeddings").fetchone()[0]
    except sqlite3.Error:
        return 0


@pytest.mark.slow
def test_kill_during_embedding_then_rerun(empty_cli, tmp_path, model_spec):
    photos = tmp_path / "photos"
    write_good_images(photos, 400)
    env = {"LABELER_BATCH_SIZE": "8", "LABELER_CHECKPOINT_EVERY": "16", "LABELER_WORKERS": "1"}
    proc = subprocess.Popen(manage_argv("--home", empty_cli.home, "--model", model_spec, "index", photos, "--json"),
                            cwd=ROOT, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    db_path = empty_cli.home / "catalog.db"
    deadline = time.monotonic() + 120
    index_dir = empty_cli.home / "indexes"

    def saved_now() -> int:
        files = list(index_dir.glob("*.faiss"))
        return read_stamp(files[0])["count"] if files else 0

    # Kill once the file has been saved mid-run and the catalog has moved past it, so the
    # reopen has something to replay (a save can still land just before the kill: then 0).
    while (_embedded(db_path) < 40 or saved_now() < 16 or saved_now() >= _embedded(db_path)) \
            and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, "indexing finished before it could be killed; use more images"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = _embedded(db_path)
    assert 40 <= killed_at < 400
    index_file = next((empty_cli.home / "indexes").glob("*.faiss"))
    saved = read_stamp(index_file)["count"]
    assert 16 <= saved <= killed_at  # saved during the run, never ahead of the catalog
    opened = Collection(Config(home=empty_cli.home, model=model_spec)).index_keeper
    assert len(in_session(opened.get)) == killed_at  # nothing committed is lost
    assert opened.last_replay == {"changes": killed_at - saved, "added": killed_at - saved, "removed": 0}

    report = empty_cli.json("index", photos)
    assert report["embedded"] == 400 - killed_at
    check = empty_cli.json("check")
    assert (check["ok"], check["problems"], check["repaired"], check["index"]["vectors"]) == (True, [], False, 400)
    stats = empty_cli.json("stats")
    assert stats["images"] == stats["embedded"] == 400
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("SELECT count(*), count(DISTINCT image_id) FROM embeddings").fetchone() == (400, 400)
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
