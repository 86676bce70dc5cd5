"""Login and logout pages; the gate, tokens and CSRF they rely on live in :mod:`.access`."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, abort, flash, g, redirect, render_template, request, session, url_for

from ..review import leases
from ..store import users
from ..store.catalog import User
from .access import csrf_token
from .context import client_address, collection

bp = Blueprint("auth", __name__, url_prefix="/auth")


def _safe_next(target: str | None) -> str:
    # Only same-site paths: an open redirect would let a phishing link bounce through us.
    # Browsers read a backslash as a slash, so "/\evil.example" is off-site too.
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target \
            or urlsplit(target).netloc:
        return url_for("review.dashboard")
    return target


@bp.before_request
def _refuse_control_characters_in_next() -> None:
    # A CR or LF in the redirect target would end up in a Location header.
    target = request.args.get("next") or ""
    if any(ord(c) < 32 or ord(c) == 127 for c in target):
        abort(400, "next must be a path on this site, without control characters")


@bp.route("/login", methods=("GET", "POST"))
def login():
    error, status, headers = None, 200, {}
    if request.method == "POST":
        try:
            with collection().session() as s:
                user = users.log_in(s, request.form.get("username", ""), request.form.get("password", ""),
                                    client_address())
                generation = user.session_generation if user is not None else None
        except users.LoginThrottled as exc:
            error, status, headers = f"Too many failed logins. Try again in {exc.retry_after} seconds.", 429, \
                {"Retry-After": str(exc.retry_after)}
        else:
            if user is None:
                error, status = "Wrong user name or password.", 401
            else:
                session.clear()  # a fresh session (and CSRF token) on login: no session fixation
                session["user_id"] = user.id
                session["generation"] = generation
                csrf_token()
                return redirect(_safe_next(request.args.get("next")))
    return render_template("auth/login.html", error=error), status, headers


@bp.route("/logout", methods=("POST",))
def logout():
    if g.user is not None:
        with collection().session() as s:
            user = s.get(User, g.user.id)
            if user is not None:
                users.end_sessions(s, user)  # every session of the user ends, not only this cookie
                leases.release(s, user.id)  # and their cards go back to the team now, not in minutes
    session.clear()
    flash("Logged out.")
    return redirect(url_for("auth.login"))
