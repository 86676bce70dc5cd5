"""The command line: a thin layer that parses flags and dispatches to labeler's functions.

Every command takes ``--json`` (machine-readable stdout, no progress bar). A user mistake is one
line on stderr and a non-zero exit.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Callable

import click

from .config import Config
from .errors import LabelerError


class LabelerGroup(click.Group):
    """Turns labeler's typed errors into one clear line on stderr."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except LabelerError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except (OSError, ValueError) as exc:
            # A bad path or value reached the edge: still one line, never a traceback.
            click.echo(f"error: {exc}", err=True)
            ctx.exit(1)


@click.group(cls=LabelerGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--home", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder holding the catalog, indexes and thumbnails [env LABELER_HOME; default ./instance].")
@click.option("--model", default=None, metavar="SPEC",
              help="Model spec, e.g. labeler-tiny, ViT-B-32:laion2b_s34b_b79k, ARCH:/path/weights.pt, "
                   "local-dir:/path [env LABELER_MODEL; default: the collection's model].")
@click.option("--device", default=None, help="torch device [default: cuda when available, else cpu].")
@click.pass_context
def cli(ctx: click.Context, home: Path | None, model: str | None, device: str | None) -> None:
    """labeler: label, search and review image collections with CLIP prompt ensembles."""
    ctx.obj = Config.from_env(home=home, model=model, device=device)


json_option = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON on stdout.")


def get_config() -> Config:
    return click.get_current_context().find_root().obj


def get_collection():
    from .collection import Collection

    return Collection(get_config())


def emit(as_json: bool, data: Any, human: Callable[[Any], None] | None = None) -> None:
    """Print ``data`` as JSON, or call ``human`` to print it for people."""
    if as_json:
        click.echo(json.dumps(data, indent=2, default=str))
    elif human is not None:
        human(data)
    else:
        click.echo(json.dumps(data, indent=2, default=str))


class Progress:
    """A progress bar on a terminal; silent under --json or when stderr is not a terminal."""

    def __init__(self, label: str, total: int | None, quiet: bool):
        self.enabled = not quiet and sys.stderr.isatty()
        self._bar = click.progressbar(length=total or 0, label=label, file=sys.stderr) if self.enabled else None
        if self._bar is not None:
            self._bar.__enter__()

    def update(self, n: int = 1) -> None:
        if self._bar is not None:
            self._bar.update(n)

    def set_total(self, total: int) -> None:
        if self._bar is not None:
            self._bar.length = total

    def close(self) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
            self._bar = None

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _load_commands() -> None:
    # Imported here, after the helpers above exist: the command modules import them.
    from .commands import catalog, demo, labels, search, web, world

    for module in (catalog, world, labels, search, web, demo):
        for command in module.COMMANDS:
            cli.add_command(command)


_load_commands()


def main() -> None:
    cli(prog_name="manage.py")
