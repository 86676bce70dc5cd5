"""Commands that need no model start without torch.

Each command runs as a real ``manage.py`` process under ``python -X importtime``, whose log on
stderr names every module the process imported. Indexing a new image is the control: it needs
the model, so it must show torch in the same log.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from labeler.store import db, users
from tests.cli import ROOT, serving
from tests.imagegen import write_good_images

MODEL_MODULES = {"torch", "open_clip", "torchvision"}
QUERY = "a hammer on a workbench"


def _imported(stderr: str) -> set[str]:
    """Every module named in an ``-X importtime`` log."""
    return {line.rsplit("|", 1)[1].strip() for line in stderr.splitlines()
            if line.startswith("import time:") and "|" in line}


def _traced_argv(*args) -> list[str]:
    return [sys.executable, "-X", "importtime", str(ROOT / "manage.py"), *map(str, args)]


def traced(*args) -> tuple[subprocess.CompletedProcess, set[str]]:
    """``manage.py ARGS`` in a real process; its result and the modules it imported."""
    done = subprocess.run(_traced_argv(*args), cwd=ROOT, capture_output=True, text=True, env=dict(os.environ))
    assert done.returncode == 0, f"manage.py {' '.join(map(str, args))}: {done.stderr[-2000:]}"
    return done, _imported(done.stderr)


@pytest.mark.slow
def test_commands_without_model_work_never_import_torch(indexed_cli, tmp_path):
    home = indexed_cli.home
    prefix = ("--home", home, "--model", indexed_cli.model)
    indexed_cli("label", "--prompt-set", "workshop")  # in-process: caches the prompt vectors
    indexed_cli("search", QUERY)  # ... and the query text's vector

    done, modules = traced(*prefix, "search", QUERY, "--json")
    assert modules & MODEL_MODULES == set() and '"image_id"' in done.stdout
    assert "labeler.search" in modules  # the log really covers the command's own imports

    for args in (("--help",), ("db", "upgrade"), ("label", "--prompt-set", "workshop"),
                 ("export", tmp_path / "labels.csv"), ("check",), ("stats",), ("similar", "1")):
        _, modules = traced(*(() if args == ("--help",) else prefix), *args)
        assert modules & MODEL_MODULES == set(), f"{args[0]} imported {sorted(modules & MODEL_MODULES)}"
    assert (tmp_path / "labels.csv").stat().st_size > 0

    write_good_images(tmp_path / "new", 1, seed=99)
    _, modules = traced(*prefix, "index", tmp_path / "new")  # a new image needs the model ...
    assert "onnxruntime" in modules  # ... which, once exported, runs without torch
    assert modules & MODEL_MODULES == set()


@pytest.mark.slow
def test_serve_answers_a_cached_search_without_torch(indexed_cli):
    indexed_cli("search", QUERY)  # caches the query text's vector
    config = indexed_cli.home
    from labeler.config import Config

    with db.session_scope(Config(home=config, model=indexed_cli.model)) as s:
        users.create_user(s, "fast", "a long enough password", "reviewer")
        token = users.issue_token(s, "fast")
    db.dispose_engines()
    argv = _traced_argv("--home", indexed_cli.home, "--model", indexed_cli.model, "serve")
    with serving(argv, env={**os.environ, "LABELER_SECRET_KEY": "fast-start"}) as server:
        status, body = server.get("/api/search?q=a+hammer+on+a+workbench&k=5",
                                  {"Authorization": f"Bearer {token}"})
        assert status == 200 and body.count(b'"image_id"') >= 5
        log = server.stop()
    modules = _imported(log)
    assert "waitress" in modules and modules & MODEL_MODULES == set()
