"""Accounts: hashed passwords, roles, API tokens, and the ``user`` commands."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from labeler import db, users
from labeler.catalog import User
from labeler.config import Config
from labeler.users import UserError
from tests.cli import manage


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
    ("rita", "short", "reviewer", "at least 8"),
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
    added = manage("--home", home, "user", "add", "ada", "--role", "admin", "--password-stdin", stdin="s3cret pass\n")
    assert added.returncode == 0, added.stderr
    assert "created admin 'ada'" in added.stdout
    again = manage("--home", home, "user", "add", "ada", "--password-stdin", stdin="s3cret pass\n")
    assert again.returncode == 2 and again.stderr.strip() == "error: user 'ada' already exists"
    empty = manage("--home", home, "user", "add", "bob", "--password-stdin", stdin="")
    assert empty.returncode == 2 and empty.stderr.startswith("error: no password on stdin")
    token = manage("--home", home, "user", "token", "ada")
    assert token.returncode == 0 and len(token.stdout.strip()) >= 40
    missing = manage("--home", home, "user", "token", "nobody")
    assert missing.returncode == 2 and missing.stderr.strip() == "error: no user named 'nobody'"
    with db.session_scope(Config(home=home)) as s:
        ada = s.scalar(select(User).where(User.name == "ada"))
        assert ada.role == "admin" and users.authenticate(s, "ada", "s3cret pass") is not None
        assert users.user_for_token(s, token.stdout.strip()).name == "ada"
