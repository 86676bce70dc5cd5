"""Who may do what: the login gate in front of everything, API tokens, CSRF and the admin check.

Every request but the login page and static assets needs a user: from the session cookie,
or from ``Authorization: Bearer <token>`` (then the cookie is ignored). A cookie counts only
while its session generation is the user's current one (see :mod:`labeler.store.users`). Every state-changing
cookie request must carry the session's CSRF token, as the ``csrf_token`` form field or the
``X-CSRF-Token`` header. Token requests are exempt: a browser never attaches that header
on its own, so another site cannot forge one. Not a blueprint: every blueprint uses it.
"""

from __future__ import annotations

import functools
import hmac
import secrets

from flask import Flask, abort, g, redirect, request, session, url_for

from ..store import users
from .context import collection, error_response

UNSAFE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
PUBLIC_ENDPOINTS = {"auth.login", "static"}


def csrf_token() -> str:
    """The session's CSRF token, made on first use."""
    token = session.get("csrf")
    if not token:
        token = session["csrf"] = secrets.token_urlsafe(32)
    return token


def _csrf_ok() -> bool:
    sent = request.headers.get("X-CSRF-Token") or request.form.get("csrf_token") or ""
    expected = session.get("csrf") or ""
    return bool(expected) and hmac.compare_digest(sent, expected)


def _load_user() -> None:
    g.user = None
    g.via_token = False
    if request.routing_exception is not None:
        return None  # no such route (e.g. a traversal attempt): a plain 404/405, logged in or not
    header = request.headers.get("Authorization", "")
    with collection().session() as s:
        if header.startswith("Bearer "):
            g.via_token = True
            g.user = users.user_for_token(s, header[len("Bearer "):].strip())
            if g.user is None:
                return error_response(401, "invalid API token")
        elif session.get("user_id") is not None:
            from ..store.catalog import User

            user = s.get(User, session["user_id"])
            # Logout, a new password or a disabled account ended this session on the server.
            if users.session_valid(user, session.get("generation")):
                g.user = user
            else:
                session.clear()
    if request.method in UNSAFE_METHODS and not g.via_token and not _csrf_ok():
        return error_response(400, "missing or wrong CSRF token; reload the page and try again")
    if g.user is None and request.endpoint not in PUBLIC_ENDPOINTS:
        if request.path.startswith("/api"):
            return error_response(401, "log in or send an API token (Authorization: Bearer ...)")
        return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
    return None


def init_app(app: Flask) -> None:
    app.before_request(_load_user)


def admin_required(view):
    """Only admins; everybody else gets a 403."""

    @functools.wraps(view)
    def wrapped(*args, **kwargs):
        if g.user is None or g.user.role != "admin":
            abort(403, "only admins can do this")
        return view(*args, **kwargs)

    return wrapped
