"""What every command module shares: the ``--json`` flag, output, progress bars and the root's config.

This module imports no command module and not ``labeler.cli``, so any command module can be
imported first (``cli.py`` only assembles them).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import click

from ..collection import Collection
from ..config import Config

if TYPE_CHECKING:  # imported where used: the API brings in image decoding, which --help never needs
    from ..api import Labeler

json_option = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON on stdout.")


def get_config() -> Config:
    """The config the root group built from the environment and its flags."""
    return click.get_current_context().find_root().obj


def get_collection() -> Collection:
    return Collection(get_config())


def get_labeler(quiet: bool = True, **settings) -> Labeler:
    """The Python API on the root's config (with ``settings``); unless ``quiet``, a first ONNX
    export's progress lines go to stderr."""
    from ..api import Labeler  # lazy: the API imports image decoding (PIL), which --help never needs

    on_export = None if quiet else (lambda line: click.echo(line, err=True))
    return Labeler(get_config().with_(**settings), on_export=on_export)


def emit(as_json: bool, data: Any, human: Callable[[Any], None] | None = None) -> None:
    """Print ``data`` as JSON, or call ``human`` to print it for people."""
    if as_json or human is None:
        click.echo(json.dumps(data, indent=2, default=str))
    else:
        human(data)


class Progress:
    """A progress bar on a terminal; silent under --json or when stderr is not a terminal.

    ``label`` None: no bar until the work names its first step (:meth:`stage`)."""

    def __init__(self, label: str | None, total: int | None, quiet: bool):
        self.enabled = not quiet and sys.stderr.isatty()
        self._bar = None
        if label is not None:
            self._open(label, total)

    def _open(self, label: str, total: int | None, counted: bool = True) -> None:
        if not self.enabled:
            return
        if not counted:  # a step with nothing to count: its name, not a bar stuck at 0%
            click.echo(f"{label} ...", file=sys.stderr)
            return
        self._bar = click.progressbar(length=total or 0, label=label, file=sys.stderr)
        self._bar.__enter__()

    def update(self, n: int = 1) -> None:
        if self._bar is not None:
            self._bar.update(n)

    def set_total(self, total: int) -> None:
        if self._bar is not None:
            self._bar.length = total

    def stage(self, label: str, total: int | None) -> None:
        """End this bar's line and start a bar of its own for the next step: ``label``, 0 of
        ``total``; a step with no count (``total`` None) shows its name alone."""
        self.close()
        self._open(label, total, counted=total is not None)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
            self._bar = None

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def generate_with_progress(out: Path, count: int, seed: int, size: int, quiet: bool) -> Path:
    """``generate_world`` behind a progress bar; returns the truth.csv path."""
    from ..demo_world import generate_world  # lazy: PIL only for the commands that draw images

    with Progress("generating", count, quiet) as bar:
        done = 0

        def progress(n_done: int) -> None:  # generate_world reports a running total
            nonlocal done
            bar.update(n_done - done)
            done = n_done

        return generate_world(out, count, seed, size=size, progress=progress)
