"""What the blueprints share: the app's collection and the one way to answer an error.

Blueprints import it at the top of the file; nothing here imports a blueprint or the assembler
(``web/__init__.py``), so no arrow runs back up.
"""

from __future__ import annotations

import functools
import ipaddress

from flask import current_app, g, jsonify, render_template, request

from ..collection import Collection
from ..review import preferences


def collection() -> Collection:
    return current_app.extensions["labeler"]


def user_preferences() -> dict:
    """The logged-in user's preferences (the defaults when none, or no one is logged in), read once
    per request."""
    if "preferences" not in g:
        user = g.get("user")
        if user is None:
            g.preferences = dict(preferences.DEFAULTS)
        else:
            with collection().session() as s:
                g.preferences = preferences.get(s, user.id)
    return g.preferences


def client_address() -> str:
    """The client's address: the peer's, or, when the peer is one of ``LABELER_TRUSTED_PROXIES``,
    the nearest address in ``X-Forwarded-For`` that is not a trusted proxy (the rightmost: the
    ones to its left are whatever the client wrote)."""
    peer = request.remote_addr or ""
    trusted = _trusted_networks(collection().config.trusted_proxies)
    if not trusted or not _in(peer, trusted):
        return peer
    hops = [hop.strip() for header in request.headers.getlist("X-Forwarded-For") for hop in header.split(",")]
    for hop in reversed([h for h in hops if h]):
        if not _in(hop, trusted):
            return hop[:64]
    return peer


@functools.lru_cache(maxsize=8)
def _trusted_networks(items: tuple[str, ...]) -> tuple:
    return tuple(ipaddress.ip_network(item, strict=False) for item in items)


def _in(address: str, networks: tuple) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


def wants_json() -> bool:
    return request.path.startswith("/api/") or request.path == "/api"


def error_response(status: int, message: str, **extra):
    """A JSON error for the API, an HTML page elsewhere; never a stack trace."""
    if wants_json():
        return jsonify({"error": message, "status": status, **extra}), status
    return render_template("error.html", status=status, message=message), status
