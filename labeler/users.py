"""Accounts: reviewers and admins with hashed passwords, and API tokens.

Passwords use werkzeug's salted hashes. API tokens are random 256-bit strings shown once;
only their SHA-256 is stored, which is enough for a secret with that much entropy and
lets a request be matched with one indexed lookup.
"""

from __future__ import annotations

import hashlib
import secrets
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from .catalog import User
from .errors import LabelerError, NotFound

ROLES = ("reviewer", "admin")
MIN_PASSWORD_LENGTH = 8
_DUMMY_HASH = generate_password_hash("not a real password")  # for unknown names


class UserError(LabelerError):
    """A bad user name, role or password."""


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_user(session: Session, name: str, password: str, role: str = "reviewer") -> User:
    """Add an account; the name must be new and the password at least 8 characters."""
    name = name.strip()
    if not name or len(name) > 128:
        raise UserError("a user name must be 1 to 128 characters")
    if role not in ROLES:
        raise UserError(f"unknown role '{role}'; use one of: {', '.join(ROLES)}")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise UserError(f"a password must be at least {MIN_PASSWORD_LENGTH} characters")
    if session.scalar(select(User).where(User.name == name)) is not None:
        raise UserError(f"user '{name}' already exists")
    user = User(name=name, password_hash=generate_password_hash(password), role=role)
    session.add(user)
    session.flush()
    return user


def get_user(session: Session, name: str) -> User:
    user = session.scalar(select(User).where(User.name == name))
    if user is None:
        raise NotFound(f"no user named '{name}'")
    return user


def authenticate(session: Session, name: str, password: str) -> User | None:
    """The user when the password matches, else None (the caller says nothing about which part was wrong)."""
    user = session.scalar(select(User).where(User.name == name.strip()))
    if user is None:
        # Hash anyway so a missing name takes as long as a wrong password.
        check_password_hash(_DUMMY_HASH, password)
        return None
    return user if check_password_hash(user.password_hash, password) else None


def issue_token(session: Session, name: str) -> str:
    """Make a new API token for ``name``, replacing any earlier one; returns it (shown once)."""
    user = get_user(session, name)
    token = secrets.token_urlsafe(32)
    user.api_token_hash = token_hash(token)
    session.flush()
    return token


def user_for_token(session: Session, token: str) -> User | None:
    if not token:
        return None
    return session.scalar(select(User).where(User.api_token_hash == token_hash(token)))


def create_demo_admin(session: Session, home: Path) -> dict | None:
    """An admin account for a fresh demo, so the UI can be opened at once; None when accounts exist.

    The password is also written to ``home/demo-credentials.txt``, readable by its owner only.
    Returns ``{"name", "password", "file"}``.
    """
    if session.scalar(select(func.count()).select_from(User)):
        return None
    password = secrets.token_urlsafe(9)
    create_user(session, "admin", password, "admin")
    credentials = home / "demo-credentials.txt"
    credentials.write_text(f"admin {password}\n")
    credentials.chmod(0o600)
    return {"name": "admin", "password": password, "file": str(credentials)}
