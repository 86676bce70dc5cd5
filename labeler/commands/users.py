"""``user add`` and ``user token``: accounts and API tokens."""

from __future__ import annotations

import sys

import click

from ..errors import LabelerError
from .context import emit, get_config, json_option


@click.group()
def user() -> None:
    """Manage accounts: ``user add NAME --role reviewer|admin``, ``user token NAME``."""


def _read_password(from_stdin: bool) -> str:
    if from_stdin or not sys.stdin.isatty():
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise LabelerError("no password on stdin; pipe one line, e.g. echo SECRET | manage.py user add ...")
        return password
    return click.prompt("Password", hide_input=True, confirmation_prompt=True)


@user.command("add")
@click.argument("name")
@click.option("--role", type=click.Choice(["reviewer", "admin"]), default="reviewer", show_default=True)
@click.option("--password-stdin", is_flag=True, help="Read the password as one line from stdin.")
@json_option
def user_add(name: str, role: str, password_stdin: bool, as_json: bool) -> None:
    """Create an account with a hashed password (asked for on a terminal, else read from stdin)."""
    from .. import users
    from ..db import session_scope

    password = _read_password(password_stdin)
    with session_scope(get_config()) as s:
        created = users.create_user(s, name, password, role)
        data = {"id": created.id, "name": created.name, "role": created.role}
    emit(as_json, data, lambda d: click.echo(f"created {d['role']} '{d['name']}'"))


@user.command("token")
@click.argument("name")
@json_option
def user_token(name: str, as_json: bool) -> None:
    """Print a new API token for NAME (replacing the old one); send it as Authorization: Bearer TOKEN."""
    from .. import users
    from ..db import session_scope

    with session_scope(get_config()) as s:
        token = users.issue_token(s, name)
    emit(as_json, {"name": name, "token": token}, lambda d: click.echo(d["token"]))


COMMANDS = [user]
