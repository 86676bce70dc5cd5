"""Running ``manage.py``: in-process through click (fast) or in a real subprocess (the real entry point)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from labeler.cli import cli

ROOT = Path(__file__).resolve().parent.parent


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


def manage_argv(*args) -> list[str]:
    """The command line of ``python manage.py ARGS``, for a server started with ``subprocess.Popen``."""
    return [sys.executable, str(ROOT / "manage.py"), *map(str, args)]


def manage(*args, env: dict | None = None, stdin: str | None = None, expect: int | None = None,
           timeout: float | None = None) -> subprocess.CompletedProcess:
    """Runs ``python manage.py ARGS`` in a real subprocess; with ``expect``, checks its exit status."""
    done = subprocess.run(manage_argv(*args), cwd=ROOT, input=stdin, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=timeout)
    if expect is not None:
        assert done.returncode == expect, f"manage.py {' '.join(map(str, args))} exited {done.returncode}: " \
                                          f"{done.stderr.strip()[-2000:]}"
    return done
