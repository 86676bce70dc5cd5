"""``user add``, ``user token``, ``user passwd``, ``user disable``/``enable`` and ``user list``: accounts."""

from __future__ import annotations

import sys

import click

from ..store.db import session_scope

from ..errors import LabelerError
from .context import emit, get_config, json_option


@click.group()
def user() -> None:
    """Manage accounts: ``user add NAME --role reviewer|admin``, ``user token NAME``, ``user passwd NAME``,
    ``user disable NAME``, ``user enable NAME``, ``user list``."""


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
    """Create an account with a hashed password (asked for on a terminal, else read from stdin).

    A password has at least 10 characters, not all whitespace, and is not a common one.
    """
    from ..store import users  # lazy: werkzeug's hashing only for account commands

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
    from ..store import users  # lazy: werkzeug's hashing only for account commands

    with session_scope(get_config()) as s:
        token = users.issue_token(s, name)
    emit(as_json, {"name": name, "token": token}, lambda d: click.echo(d["token"]))


@user.command("passwd")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the new password as one line from stdin.")
@json_option
def user_passwd(name: str, password_stdin: bool, as_json: bool) -> None:
    """Set a new password for NAME; every session of NAME ends (its API token keeps working)."""
    from ..store import users  # lazy: werkzeug's hashing only for account commands

    password = _read_password(password_stdin)
    with session_scope(get_config()) as s:
        changed = users.set_password(s, name, password)
        data = {"name": changed.name, "sessions_ended": True}
    emit(as_json, data, lambda d: click.echo(f"password of '{d['name']}' changed; its sessions have ended"))


def _set_disabled(name: str, disabled: bool, as_json: bool) -> None:
    from ..store import users  # lazy: werkzeug's hashing only for account commands

    with session_scope(get_config()) as s:
        account = users.set_disabled(s, name, disabled)
        data = {"name": account.name, "disabled": account.disabled_at is not None}
    emit(as_json, data, lambda d: click.echo(
        f"disabled '{d['name']}': its sessions have ended and its API token no longer works"
        if d["disabled"] else f"enabled '{d['name']}'"))


@user.command("disable")
@click.argument("name")
@json_option
def user_disable(name: str, as_json: bool) -> None:
    """Disable NAME: no login, every session ends, the API token stops working. Reviews stay."""
    _set_disabled(name, True, as_json)


@user.command("enable")
@click.argument("name")
@json_option
def user_enable(name: str, as_json: bool) -> None:
    """Let a disabled NAME log in again (with its old password; a new API token is needed)."""
    _set_disabled(name, False, as_json)


@user.command("list")
@json_option
def user_list(as_json: bool) -> None:
    """Every account: name, role, whether disabled, and failed logins since the last success."""
    from ..store import users  # lazy: werkzeug's hashing only for account commands

    with session_scope(get_config()) as s:
        data = users.list_users(s)

    def human(rows: list[dict]) -> None:
        for row in rows:
            state = "disabled" if row["disabled"] else "active"
            click.echo(f"{row['name']}\t{row['role']}\t{state}\tfailed logins: {row['failed_logins']}")

    emit(as_json, data, human)


COMMANDS = [user]
