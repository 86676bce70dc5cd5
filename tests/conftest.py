"""Shared fixtures: a real model, real image folders and a real catalog under a temporary home."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from labeler import db
from labeler.cli import cli
from labeler.collection import Collection
from labeler.config import Config
from labeler.encoder import TINY_DIR, TINY_NAME

ROOT = Path(__file__).resolve().parent.parent


WORLD_SIZE = 40


@pytest.fixture(scope="session")
def model_spec() -> str:
    """The bundled demo model: real open_clip weights that do zero-shot matching.

    ``LABELER_TEST_MODEL`` runs the suite on another spec (real CLIP, say); the tests that
    check labeler-tiny's own quality still use labeler-tiny.
    """
    spec = os.environ.get("LABELER_TEST_MODEL", TINY_NAME)
    if spec == TINY_NAME and not (TINY_DIR / "open_clip_model.safetensors").exists():
        raise RuntimeError("labeler-tiny weights are missing: they are committed under labeler/models/labeler-tiny")
    return spec


@pytest.fixture(scope="session")
def world(tmp_path_factory) -> Path:
    """A small workshop world: images plus truth.csv."""
    from labeler.world import generate_world

    folder = tmp_path_factory.mktemp("world")
    generate_world(folder, WORLD_SIZE, seed=7, size=64)
    return folder


@pytest.fixture(scope="session")
def indexed_home(tmp_path_factory, model_spec, world) -> Path:
    """A home with the world indexed once; each test works on its own copy (``coll``)."""
    from labeler.pipeline import index_paths

    home = tmp_path_factory.mktemp("indexed") / "home"
    index_paths(Collection(Config(home=home, model=model_spec)), [world])
    db.dispose_engines()  # checkpoint the WAL so a file copy is the whole catalog
    return home


@pytest.fixture
def coll(indexed_home, model_spec, tmp_path) -> Collection:
    home = tmp_path / "home"
    shutil.copytree(indexed_home, home)
    return Collection(Config(home=home, model=model_spec))


@pytest.fixture
def dev_run(coll, model_spec) -> "Cli":
    return Cli(coll.config.home, model_spec)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def config(home: Path, model_spec: str) -> Config:
    return Config(home=home, model=model_spec)


@pytest.fixture
def collection(config: Config) -> Collection:
    return Collection(config)


class Cli:
    """Runs ``manage.py`` in-process (fast: the model loads once) against one home folder."""

    def __init__(self, home: Path, model: str | None):
        self.home = home
        self.model = model
        self.runner = CliRunner()

    def __call__(self, *args: str, expect: int | None = 0):
        prefix = ["--home", str(self.home)] + (["--model", self.model] if self.model else [])
        result = self.runner.invoke(cli, prefix + [str(a) for a in args], catch_exceptions=False)
        if expect is not None:
            assert result.exit_code == expect, (result.exit_code, result.output)
        return result

    def json(self, *args: str, expect: int | None = 0):
        result = self(*args, "--json", expect=expect)
        return json.loads(result.stdout)


@pytest.fixture
def run(home: Path, model_spec: str) -> Cli:
    return Cli(home, model_spec)


def manage(*args: str, env: dict | None = None, **kwargs) -> subprocess.CompletedProcess:
    """Runs ``python manage.py`` in a real subprocess."""
    return subprocess.run([sys.executable, str(ROOT / "manage.py"), *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, env={**os.environ, **(env or {})}, **kwargs)


# With LABELER_NO_SKIPS=1 (``make test``, and so CI) a skipped test fails the run: a machine that
# lacks a part (chromium, PostgreSQL, Playwright) is seen, not silently passed.
_skipped: list[str] = []


def pytest_collectreport(report) -> None:
    if report.skipped:  # a whole module skipped, e.g. by importorskip
        _skipped.append(report.nodeid)


def pytest_runtest_logreport(report) -> None:
    if report.skipped and not hasattr(report, "wasxfail"):
        _skipped.append(report.nodeid)


def pytest_sessionfinish(session, exitstatus) -> None:
    if _skipped and os.environ.get("LABELER_NO_SKIPS") == "1" and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter) -> None:
    if _skipped and os.environ.get("LABELER_NO_SKIPS") == "1":
        terminalreporter.write_line(f"LABELER_NO_SKIPS=1: {len(_skipped)} skipped, so the run fails "
                                    "(scripts/setup.sh --test installs what the tests need)", red=True)
