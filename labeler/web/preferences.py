"""A user's preferences: the page (a form that works without JavaScript) and the JSON API.

    GET  /api/preferences        your preferences, each action's keys and the keys no action may take
    PUT  /api/preferences        {"theme"?, "density"?, "keys"?}  400 naming what was refused
"""

from __future__ import annotations

from flask import Blueprint, flash, g, jsonify, redirect, render_template, request, url_for

from ..review import preferences
from ..store import db
from .cards import fixed_keys, key_defaults, shortcuts
from .context import collection, user_preferences
from .requests import json_body

bp = Blueprint("preferences", __name__)


def _save(changes) -> dict:
    return db.write_transaction(collection().config, lambda s: preferences.save(
        s, g.user.id, changes, key_defaults(), fixed_keys()))


def _answer(prefs: dict) -> dict:
    return {"preferences": prefs, "keys": preferences.effective_keys(key_defaults(), prefs["keys"]),
            "fixed": sorted(fixed_keys())}


@bp.route("/api/preferences", methods=("GET", "PUT"))
def api():
    if request.method == "GET":
        return jsonify(_answer(user_preferences()))
    return jsonify(_answer(_save(json_body())))


def _help() -> dict[str, str]:
    """What each action does, in the shortcut table's words."""
    return {action: row["help"] for row in shortcuts({}) for action in row["bind"].values()}


@bp.route("/preferences", methods=("GET", "POST"))
def page():
    prefs, error, status = user_preferences(), None, 200
    if request.method == "POST":
        form = request.form
        # A key field left empty (or at its default) keeps the default key.
        keys = {action: form.get(f"key-{action}", "") for action in key_defaults() if form.get(f"key-{action}", "")}
        try:
            prefs = _save({"theme": form.get("theme", ""), "density": form.get("density", ""), "keys": keys})
            flash("Preferences saved.")
            return redirect(url_for("preferences.page"))
        except preferences.PreferenceError as exc:
            error, status = str(exc), 400
            prefs = {**prefs, "theme": form.get("theme"), "density": form.get("density"), "keys": keys}
    return render_template("preferences.html", prefs=prefs, defaults=key_defaults(), help=_help(), error=error,
                           themes=preferences.THEMES, densities=preferences.DENSITIES), status
