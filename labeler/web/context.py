"""What the blueprints share: the app's collection and the one way to answer an error.

Blueprints import it at the top of the file; nothing here imports a blueprint or the assembler
(``web/__init__.py``), so no arrow runs back up.
"""

from __future__ import annotations

from flask import current_app, jsonify, render_template, request

from ..collection import Collection


def collection() -> Collection:
    return current_app.extensions["labeler"]


def wants_json() -> bool:
    return request.path.startswith("/api/") or request.path == "/api"


def error_response(status: int, message: str, **extra):
    """A JSON error for the API, an HTML page elsewhere; never a stack trace."""
    if wants_json():
        return jsonify({"error": message, "status": status, **extra}), status
    return render_template("error.html", status=status, message=message), status
