"""Login and logout pages; the gate, tokens and CSRF they rely on live in :mod:`.access`."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, flash, redirect, render_template, request, session, url_for

from .. import users
from .access import csrf_token

bp = Blueprint("auth", __name__, url_prefix="/auth")


def _safe_next(target: str | None) -> str:
    # Only same-site paths: an open redirect would let a phishing link bounce through us.
    if not target or not target.startswith("/") or target.startswith("//") or urlsplit(target).netloc:
        return url_for("review.dashboard")
    return target


@bp.route("/login", methods=("GET", "POST"))
def login():
    from . import collection

    error = None
    if request.method == "POST":
        with collection().session() as s:
            user = users.authenticate(s, request.form.get("username", ""), request.form.get("password", ""))
        if user is None:
            error = "Wrong user name or password."
        else:
            session.clear()  # a fresh session (and CSRF token) on login: no session fixation
            session["user_id"] = user.id
            csrf_token()
            return redirect(_safe_next(request.args.get("next")))
    status = 401 if error else 200
    return render_template("auth/login.html", error=error), status


@bp.route("/logout", methods=("POST",))
def logout():
    session.clear()
    flash("Logged out.")
    return redirect(url_for("auth.login"))
