"""The command line: the root group, which assembles the command modules of :mod:`labeler.commands`.

Every command takes ``--json`` (machine-readable stdout, no progress bar). A user mistake (a
:class:`~labeler.errors.LabelerError`) is one line on stderr and its exit code; any other
exception is a bug and keeps its traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from .commands import curation, demo, indexing, labels, learning, search, serve, trust, users, world
from .config import Config
from .errors import LabelerError, disk_full
from .files import apply_umask


class LabelerGroup(click.Group):
    """Turns labeler's typed errors, and only those, into one clear line on stderr."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except Exception as exc:
            # A full disk is the machine's state, not a bug: one line too, and the same line whether
            # it surfaced bare or wrapped in a typed error (a file the user named, say).
            error = disk_full(exc) or exc
            if not isinstance(error, LabelerError):
                raise
            click.echo(f"error: {error}", err=True)
            ctx.exit(error.exit_code)


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
    apply_umask(ctx.obj.umask)


for command in (*indexing.COMMANDS, *world.COMMANDS, *labels.COMMANDS, *learning.COMMANDS, *search.COMMANDS,
                *serve.COMMANDS, *users.COMMANDS, *demo.COMMANDS, *trust.COMMANDS,
                *curation.COMMANDS):
    cli.add_command(command)


def main() -> None:
    cli(prog_name="manage.py")
