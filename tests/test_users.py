"""Accounts: hashed passwords, roles, API tokens, and the ``user`` commands."""

from __future__ import annotations

import json
from functools import partial

import pytest
from sqlalchemy import select

from labeler.store import db, users
from labeler.store.catalog import User
from labeler.config import Config
from labeler.store.users import UserError
from tests.cli import Cli


def test_passwords_are_hashed_and_checked(empty_config):
    with db.session_scope(empty_config) as s:
        user = users.create_user(s, "rita", "long enough pw", "reviewer")
        assert "long enough pw" not in user.password_hash
    with db.session_scope(empty_config) as s:
        assert users.authenticate(s, "rita", "long enough pw").name == "rita"
        assert users.authenticate(s, "rita", "wrong password") is None
        assert users.authenticate(s, "nobody", "long enough pw") is None


@pytest.mark.parametrize("name,password,role,message", [
    ("", "long enough pw", "reviewer", "1 to 128"),
    ("rita", "short", "reviewer", "at least 10"),
    ("rita", "12345678", "reviewer", "at least 10"),  # 8 characters were enough before
    ("rita", " " * 10, "reviewer", "all whitespace"),
    ("rita", "\t \n" * 4, "reviewer", "all whitespace"),
    ("rita", "1234567890", "reviewer", "too common"),
    ("rita", "Password123", "reviewer", "too common"),
    ("rita", "aaaaaaaaaaaa", "reviewer", "too common or too simple"),
    ("rita.longname", "Rita.Longname", "reviewer", "not be the user name"),
    ("rita", "long enough pw", "boss", "unknown role"),
])
def test_bad_accounts_are_refused(empty_config, name, password, role, message):
    with db.session_scope(empty_config) as s, pytest.raises(UserError, match=message):
        users.create_user(s, name, password, role)


def test_a_name_is_taken_once(empty_config):
    with db.session_scope(empty_config) as s:
        users.create_user(s, "rita", "long enough pw")
    with db.session_scope(empty_config) as s, pytest.raises(UserError, match="already exists"):
        users.create_user(s, "rita", "another password")


def test_tokens_are_stored_hashed_and_replace_each_other(empty_config):
    with db.session_scope(empty_config) as s:
        users.create_user(s, "rita", "long enough pw")
        first = users.issue_token(s, "rita")
        second = users.issue_token(s, "rita")
    with db.session_scope(empty_config) as s:
        stored = s.scalar(select(User.api_token_hash).where(User.name == "rita"))
        assert stored == users.token_hash(second) and second not in stored
        assert users.user_for_token(s, second).name == "rita"
        assert users.user_for_token(s, first) is None
        assert users.user_for_token(s, "") is None


def test_user_commands(tmp_path):
    home = tmp_path / "home"
    run = partial(Cli(home, None), expect=None)  # in process; the browser suite adds its users by manage.py
    added = run("user", "add", "ada", "--role", "admin", "--password-stdin", stdin="s3cret pass\n")
    assert added.exit_code == 0, added.stderr
    assert "created admin 'ada'" in added.stdout
    again = run("user", "add", "ada", "--password-stdin", stdin="s3cret pass\n")
    assert again.exit_code == 2 and again.stderr.strip() == "error: user 'ada' already exists"
    empty = run("user", "add", "bob", "--password-stdin", stdin="")
    assert empty.exit_code == 2 and empty.stderr.startswith("error: no password on stdin")
    token = run("user", "token", "ada")
    assert token.exit_code == 0 and len(token.stdout.strip()) >= 40
    missing = run("user", "token", "nobody")
    assert missing.exit_code == 2 and missing.stderr.strip() == "error: no user named 'nobody'"
    with db.session_scope(Config(home=home)) as s:
        ada = s.scalar(select(User).where(User.name == "ada"))
        assert ada.role == "admin" and users.authenticate(s, "ada", "s3cret pass") is not None
        assert users.user_for_token(s, token.stdout.strip()).name == "ada"


def test_the_demo_admins_generated_password_passes_the_rules(empty_config):
    with db.session_scope(empty_config) as s:
        created = users.create_demo_admin(s, empty_config.home)
    users.check_password(created["password"], "admin")
    with db.session_scope(empty_config) as s:
        assert users.authenticate(s, "admin", created["password"]) is not None


def test_weak_passwords_are_refused_by_the_cli(tmp_path):
    home = tmp_path / "home"
    run = partial(Cli(home, None), expect=None)
    for weak, message in (("12345678", "at least 10"), (" " * 8, "at least 10"), (" " * 12, "all whitespace"),
                          ("qwertyuiop", "too common")):
        refused = run("user", "add", "ada", "--password-stdin", stdin=weak + "\n")
        assert refused.exit_code == 2, refused.stderr
        assert message in refused.stderr and "Traceback" not in refused.stderr


def test_passwd_disable_enable_and_list_commands(tmp_path):
    home = tmp_path / "home"
    config = Config(home=home)
    run = partial(Cli(home, None), expect=None)
    for name, role in (("ada", "admin"), ("rita", "reviewer")):
        run("user", "add", name, "--role", role, "--password-stdin", stdin="first password\n",
               expect=0)
    token = run("user", "token", "rita", expect=0).stdout.strip()

    weak = run("user", "passwd", "rita", "--password-stdin", stdin="password\n")
    assert weak.exit_code == 2 and "at least 10" in weak.stderr
    changed = run("user", "passwd", "rita", "--password-stdin", stdin="second password\n")
    assert changed.exit_code == 0, changed.stderr
    assert "sessions have ended" in changed.stdout
    with db.session_scope(config) as s:
        assert users.authenticate(s, "rita", "first password") is None
        rita = users.authenticate(s, "rita", "second password")
        assert rita is not None and rita.session_generation == 1
        assert users.user_for_token(s, token).name == "rita"  # a new password keeps the API token

    disabled = run("user", "disable", "rita", "--json")
    assert disabled.exit_code == 0, disabled.stderr
    assert json.loads(disabled.stdout) == {"name": "rita", "disabled": True}
    with db.session_scope(config) as s:
        assert users.authenticate(s, "rita", "second password") is None
        assert users.user_for_token(s, token) is None
        assert users.get_user(s, "rita").session_generation == 2

    listed = json.loads(run("user", "list", "--json", expect=0).stdout)
    assert [(u["name"], u["role"], u["disabled"]) for u in listed] == [("ada", "admin", False),
                                                                      ("rita", "reviewer", True)]
    plain = run("user", "list", expect=0).stdout
    assert "rita\treviewer\tdisabled" in plain and "ada\tadmin\tactive" in plain

    run("user", "enable", "rita", expect=0)
    with db.session_scope(config) as s:
        assert users.authenticate(s, "rita", "second password") is not None
        assert users.user_for_token(s, token) is None  # disabling revoked the token for good
    missing = run("user", "disable", "nobody")
    assert missing.exit_code == 2 and missing.stderr.strip() == "error: no user named 'nobody'"
