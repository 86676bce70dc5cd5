"""Accounts: reviewers and admins with hashed passwords, API tokens, sessions and login throttling.

Passwords use werkzeug's salted hashes. API tokens are random 256-bit strings shown once;
only their SHA-256 is stored, which is enough for a secret with that much entropy and
lets a request be matched with one indexed lookup.

Sessions end on the server: a session cookie carries the user's ``session_generation`` from
its login, and logout, a password change or disabling the account bump it, so every cookie
issued before stops working. A disabled account's API token stops working too.

Logins are throttled in the catalog, so every server process sees the same count: after
``THROTTLE_AFTER`` failures for one user name from one client address, each try of that name
from there waits ``login_delay`` seconds after the last failure, growing with each further
failure. Failures with names that are no account count per address: past the threshold, that
address's wrong tries are refused as throttled whatever the name (so the answer never tells
which names exist), but a right password still logs in. No count is per name alone: from one
address nobody can lock an account out for everyone, and behind one address (a proxy) one
person's mistakes never lock out the others. A successful login clears its name's failures
from its address.
"""

from __future__ import annotations

import functools
import hashlib
import math
import secrets
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from .catalog import LoginFailure, User, utcnow
from ..errors import LabelerError, NotFound

ROLES = ("reviewer", "admin")
MIN_PASSWORD_LENGTH = 10
# The most common passwords of 10 characters or more (from the public breach top lists);
# shorter ones are refused by length already. Compared case-insensitively.
COMMON_PASSWORDS = frozenset("""
1234567890 0123456789 0987654321 12345678910 123456789a a123456789 1234567890a 1234567890q
1q2w3e4r5t 1q2w3e4r5t6y 1qaz2wsx3edc qwertyuiop qwerty1234 qwerty12345 qwerty123456
asdfghjkl1 zxcvbnm123 password12 password123 password1234 password12345 passw0rd123
p@ssw0rd123 iloveyou12 iloveyou123 letmein123 welcome123 changeme123 administrator
admin12345 admin123456 abc1234567 abcdefghij 1111111111 0000000000 5555555555 9876543210
princess12 football12 baseball12 sunshine12 superman12 michael123 monkey1234 dragon1234
""".split())


@functools.cache
def _dummy_hash() -> str:
    """A hash to check unknown names against; made on first use, not at import (scrypt takes a while)."""
    return generate_password_hash("not a real password")


THROTTLE_AFTER = 5  # failed logins for one name or address before each try must wait
THROTTLE_FIRST_S = 30  # the wait after the fifth failure; it doubles with each further one
THROTTLE_MAX_S = 15 * 60
THROTTLE_WINDOW = timedelta(days=1)  # older failures no longer count
KEEP_FAILURES = timedelta(days=30)  # the record of failed logins is pruned after this


class UserError(LabelerError):
    """A bad user name, role or password."""


class LoginThrottled(LabelerError):
    """Too many failed logins for a name or an address: try again after ``retry_after`` seconds."""

    def __init__(self, retry_after: int):
        super().__init__(f"too many failed logins; try again in {retry_after} seconds")
        self.retry_after = retry_after


def check_password(password: str, name: str = "") -> None:
    """Refuse a weak password: shorter than ``MIN_PASSWORD_LENGTH``, all whitespace, a common one,
    or the user's own name."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise UserError(f"a password must be at least {MIN_PASSWORD_LENGTH} characters")
    if not password.strip():
        raise UserError("a password must not be all whitespace")
    if password.strip().lower() in COMMON_PASSWORDS or len(set(password)) < 4:
        raise UserError("that password is too common or too simple; choose another")
    if name and password.strip().lower() == name.strip().lower():
        raise UserError("a password must not be the user name")


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_user(session: Session, name: str, password: str, role: str = "reviewer") -> User:
    """Add an account; the name must be new and the password pass :func:`check_password`."""
    name = name.strip()
    if not name or len(name) > 128:
        raise UserError("a user name must be 1 to 128 characters")
    if role not in ROLES:
        raise UserError(f"unknown role '{role}'; use one of: {', '.join(ROLES)}")
    check_password(password, name)
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
    """The user when the password matches and the account is enabled, else None (the caller says
    nothing about which part was wrong)."""
    user = session.scalar(select(User).where(User.name == name.strip()))
    if user is None:
        # Hash anyway so a missing name takes as long as a wrong password.
        check_password_hash(_dummy_hash(), password)
        return None
    ok = check_password_hash(user.password_hash, password)
    return user if ok and user.disabled_at is None else None


def session_valid(user: User | None, generation: object) -> bool:
    """Whether a session cookie made at ``generation`` still stands for ``user``."""
    return user is not None and user.disabled_at is None and generation == user.session_generation


def end_sessions(session: Session, user: User) -> None:
    """Log ``user`` out everywhere: every session cookie issued so far stops working."""
    user.session_generation += 1
    session.flush()


def set_password(session: Session, name: str, password: str) -> User:
    """A new password for ``name``; ends every session of the user."""
    user = get_user(session, name)
    check_password(password, user.name)
    user.password_hash = generate_password_hash(password)
    end_sessions(session, user)
    return user


def set_disabled(session: Session, name: str, disabled: bool) -> User:
    """Disable (or enable again) an account. Disabling ends its sessions and revokes its API token
    (enabling does not bring the token back); the account and its review history stay."""
    user = get_user(session, name)
    if disabled and user.disabled_at is None:
        user.disabled_at = utcnow()
        user.api_token_hash = None
        end_sessions(session, user)
    elif not disabled:
        user.disabled_at = None
    session.flush()
    return user


def list_users(session: Session) -> list[dict]:
    """Every account: ``{"id", "name", "role", "disabled", "created_at", "failed_logins"}``,
    ``failed_logins`` counting the failures since the last successful login (within a day)."""
    since = utcnow() - THROTTLE_WINDOW
    failures = dict(session.execute(
        select(LoginFailure.name, func.count()).where(LoginFailure.cleared.is_(False), LoginFailure.created_at >= since)
        .group_by(LoginFailure.name)).all())
    return [{"id": u.id, "name": u.name, "role": u.role, "disabled": u.disabled_at is not None,
             "created_at": u.created_at.isoformat(timespec="seconds"), "failed_logins": failures.get(u.name, 0)}
            for u in session.scalars(select(User).order_by(User.name))]


def login_delay(failures: int) -> int:
    """Seconds a try must wait after the last of ``failures`` failed logins: 0 below the threshold."""
    if failures < THROTTLE_AFTER:
        return 0
    return min(THROTTLE_MAX_S, THROTTLE_FIRST_S * 2 ** min(failures - THROTTLE_AFTER, 16))


def _login_key(name: str, address: str) -> tuple[str, str]:
    return name.strip()[:128], (address or "unknown")[:64]


def _wait(session: Session, clause, now: datetime) -> float:
    """Seconds still to wait after the failures matching ``clause`` (negative: none)."""
    count, last = session.execute(
        select(func.count(), func.max(LoginFailure.created_at))
        .where(clause, LoginFailure.cleared.is_(False), LoginFailure.created_at >= now - THROTTLE_WINDOW)).one()
    return (last + timedelta(seconds=login_delay(count)) - now).total_seconds() if last is not None else 0.0


def _seconds(wait: float) -> int:
    return math.ceil(wait) if wait > 0 else 0


def login_wait(session: Session, name: str, address: str, now: datetime | None = None) -> int:
    """Seconds until ``name`` may be tried from ``address`` again (its own failures from there);
    0 when it may now."""
    now = now or utcnow()
    name, address = _login_key(name, address)
    return _seconds(_wait(session, (LoginFailure.name == name) & (LoginFailure.address == address), now))


def unknown_names_wait(session: Session, address: str, now: datetime | None = None) -> int:
    """Seconds until ``address`` may make a wrong try again after its failures with names that are
    no account; 0 when it may now."""
    now = now or utcnow()
    _, address = _login_key("", address)
    return _seconds(_wait(session, (LoginFailure.address == address) & LoginFailure.name.not_in(select(User.name)),
                          now))


def log_in(session: Session, name: str, password: str, address: str) -> User | None:
    """Check a login from ``address``: the user, or None for a wrong name or password (recorded as
    a failed login). Raises :class:`LoginThrottled` when the name must wait first from this address
    (then the password is not even checked), or when a wrong try comes from an address that has
    tried too many names that are no account.

    Two tries sent at the same instant may both pass the wait check: the throttle bounds the rate
    of guessing, not each single guess.
    """
    wait = login_wait(session, name, address)
    if wait:
        raise LoginThrottled(wait)
    user = authenticate(session, name, password)
    key_name, key_address = _login_key(name, address)
    now = utcnow()
    if user is None:
        spraying = unknown_names_wait(session, address, now)
        session.add(LoginFailure(name=key_name, address=key_address, created_at=now))
        session.execute(delete(LoginFailure).where(LoginFailure.created_at < now - KEEP_FAILURES))
        if spraying:  # the same answer for a name that exists and one that does not
            session.commit()  # the caller's scope rolls back on the exception, and this failure must count
            raise LoginThrottled(spraying)
    else:
        session.execute(update(LoginFailure).where(
            LoginFailure.cleared.is_(False), LoginFailure.name == key_name, LoginFailure.address == key_address
        ).values(cleared=True))
    session.flush()
    return user


def issue_token(session: Session, name: str) -> str:
    """Make a new API token for ``name``, replacing any earlier one; returns it (shown once)."""
    user = get_user(session, name)
    token = secrets.token_urlsafe(32)
    user.api_token_hash = token_hash(token)
    session.flush()
    return token


def user_for_token(session: Session, token: str) -> User | None:
    """The enabled user whose API token this is, else None."""
    if not token:
        return None
    return session.scalar(select(User).where(User.api_token_hash == token_hash(token), User.disabled_at.is_(None)))


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
