"""Shared fixtures: a real model, real image folders and a real catalog under a temporary home."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from labeler.cli import cli
from labeler.collection import Collection
from labeler.config import Config
from labeler.encoder import TINY_DIR

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def model_spec() -> str:
    """The bundled demo model: real open_clip weights that do zero-shot matching."""
    if os.environ.get("LABELER_TEST_MODEL"):
        return os.environ["LABELER_TEST_MODEL"]
    if not (TINY_DIR / "open_clip_model.safetensors").exists():
        pytest.skip("labeler-tiny weights are not built yet (scripts/train_demo_model.py)")
    return "labeler-tiny"


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
