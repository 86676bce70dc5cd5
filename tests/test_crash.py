"""kill -9 during embedding, then a rerun: nothing corrupt, every image embedded exactly once."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import time

import pytest

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
    while _embedded(db_path) < 40 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "indexing finished before it could be killed; use more images"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = _embedded(db_path)
    assert 40 <= killed_at < 400

    report = empty_cli.json("index", photos)
    assert report["embedded"] == 400 - killed_at
    assert empty_cli.json("check") == {"ok": True, "problems": [], "repaired": False}
    stats = empty_cli.json("stats")
    assert stats["images"] == stats["embedded"] == 400
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("SELECT count(*), count(DISTINCT image_id) FROM embeddings").fetchone() == (400, 400)
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
