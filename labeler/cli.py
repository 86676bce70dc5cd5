"""The command line: the root group, which assembles the command modules of :mod:`labeler.commands`.

Every command takes ``--json`` (machine-readable stdout, no progress bar). A user mistake (a
:class:`~labeler.errors.LabelerError`, or one Click finds in the arguments) is one line on stderr and
its exit code; any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from .commands import curation, demo, indexing, labels, learning, search, serve, trust, users, world
from .config import Config
from .errors import LabelerError, disk_full
from .files import apply_umask


# a group run without a command: its help, as Click shows it (Click 8.2 and later)
_HELP_ASKED = getattr(click.exceptions, "NoArgsIsHelpError", ())


def _usage_line(exc: click.ClickException) -> str:
    """Click's own refusal (an unknown option, a bad choice, a missing argument) as one line, where
    Click prints the usage block, a hint and a blank line before it."""
    ctx = getattr(exc, "ctx", None)
    return f"error: {exc.format_message()}" + (f" (see '{ctx.command_path} --help')" if ctx is not None else "")


class LabelerGroup(click.Group):
    """Turns labeler's typed errors, and only those, into one clear line on stderr; Click's own
    usage errors too, so every mistake reads the same way."""

    def make_context(self, info_name: str | None, args: list[str], parent: click.Context | None = None,
                     **extra: Any) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.ClickException as exc:  # the root's own options, before any command runs
            if isinstance(exc, _HELP_ASKED):
                raise
            click.echo(_usage_line(exc), err=True)
            raise click.exceptions.Exit(exc.exit_code) from exc

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.ClickException as exc:
            if isinstance(exc, _HELP_ASKED):
                exc.show()
            else:
                click.echo(_usage_line(exc), err=True)
            ctx.exit(exc.exit_code)
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
