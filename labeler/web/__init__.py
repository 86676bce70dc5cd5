"""The review web app: ``create_app(config)`` builds it; one blueprint per user task.

Blueprints: ``auth`` (login), ``review`` (dashboard, queue, image detail), ``images`` (thumbnail
and full image by catalog id), ``search``, ``lab`` (prompt lab, admins) and ``api`` (JSON).
Templates and static files are the repository's top-level ``templates/`` and ``static/``.

Every response carries the security headers of :func:`_security_headers` (CSP without inline
script, no framing, no sniffing); images are cached privately only, API answers not at all.
Text answers are gzipped and static files carry their content hash in the URL (``delivery``).

Cookies: HttpOnly and SameSite=Lax always. ``SESSION_COOKIE_SECURE`` is off by default so
the app works on http://127.0.0.1; set ``LABELER_SECURE_COOKIES=1`` behind HTTPS.
"""

from __future__ import annotations

import fcntl
import logging
import os
import secrets
from pathlib import PurePath
from typing import Callable

from flask import Flask, g, request
from werkzeug.exceptions import HTTPException
from werkzeug.routing import IntegerConverter

from ..review import jobs
from ..store.catalog import MAX_ID
from ..collection import Collection
from ..config import Config
from ..errors import LabelerError, ModelUnavailable, NotFound, disk_full
from ..search import SearchTooSlow
from ..files import apply_umask
from ..resources import resource_dir
from . import context
from .context import error_response, wants_json

TEMPLATES = resource_dir("templates")
STATIC = resource_dir("static")


class CatalogId(IntegerConverter):
    """``<int:...>`` limited to what the database can hold; a larger number is a 404."""

    def __init__(self, map, *args, **kwargs):
        kwargs.setdefault("max", MAX_ID)
        super().__init__(map, *args, **kwargs)


def load_secret_key(config: Config, log: Callable[[str], None] | None = None) -> str:
    """``config.secret_key`` (``LABELER_SECRET_KEY``), else the one generated once into ``<home>/secret_key``.

    The file appears whole or not at all (written beside it, then renamed into place, under a
    lock that the other workers starting at once wait on); an empty one (a start on a full disk before this) is
    replaced, and ``log`` says that every session signed with the old key has ended.
    """
    if config.secret_key:
        return config.secret_key
    path = config.home / "secret_key"
    config.home.mkdir(parents=True, exist_ok=True)
    # One worker at a time decides: two making keys at once would each sign with their own.
    with open(config.home / ".secret_key.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        key = path.read_text().strip() if path.exists() else None
        if key:
            return key
        new = secrets.token_hex(32)
        tmp = path.with_name(f".secret_key.{os.getpid()}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(new)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    if key is not None and log is not None:
        log(f"{path} was empty (a start on a full disk?): made a new secret key, so every session "
            "signed with the old one has ended and its users must log in again")
    return new


def create_app(config: Config | None = None, test_config: dict | None = None) -> Flask:
    config = config or Config.from_env()
    apply_umask(config.umask)  # a WSGI host imports this without the CLI
    app = Flask("labeler", template_folder=str(TEMPLATES), static_folder=str(STATIC),
                instance_path=str(config.home.resolve()))
    app.config.update(
        SECRET_KEY=load_secret_key(config, log=lambda line: logging.getLogger("labeler").warning(line)),
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=config.secure_cookies,
        SESSION_COOKIE_NAME="labeler_session",
        MAX_CONTENT_LENGTH=2 * 1024 * 1024,
    )
    if test_config:
        app.config.update(test_config)
    # One collection per app; its encoder loads lazily, on the first search or lab preview.
    app.extensions["labeler"] = Collection(config)
    with app.extensions["labeler"].session() as s:
        jobs.recover(s)  # jobs a killed server left running
    app.url_map.converters["int"] = CatalogId  # before the blueprints' rules are built


    from . import (access, api, auth, cards, curation, delivery, images, lab, maps, preferences, rate_limit, review,
                   search)

    delivery.init_app(app)  # first: its compression must run after every other hook
    access.init_app(app)
    rate_limit.init_app(app, config)
    for module in (auth, review, images, search, lab, api, curation, maps, preferences):
        app.register_blueprint(module.bp)
    _register_errors(app)
    app.after_request(_security_headers)

    @app.template_filter("filename")
    def _filename(path: str | None) -> str:
        return PurePath(path).name if path else ""

    @app.context_processor
    def _globals() -> dict:
        return {"current_user": g.get("user"), "csrf_token": access.csrf_token}

    # Globals, not context: the review pages' imported macros use them too.
    app.jinja_env.globals.update(preferences=context.user_preferences, key_of=cards.key_of)

    return app


# Scripts only from our own static files (no inline script, no eval); inline style attributes stay
# allowed for the bars' widths, <style> elements do not. No site may frame a page.
CONTENT_SECURITY_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self'; style-src-attr 'unsafe-inline'; "
                           "img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; "
                           "frame-ancestors 'none'")


def _security_headers(response):
    headers = response.headers
    headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("Referrer-Policy", "same-origin")
    if request.blueprint == "images":
        # Private images: a browser may keep them, a shared proxy must not.
        response.cache_control.public = False
        response.cache_control.private = True
    elif wants_json():
        response.cache_control.no_store = True
    return response


def _register_errors(app: Flask) -> None:
    from ..review.decisions import StaleLabel

    @app.errorhandler(StaleLabel)
    def _stale(exc: StaleLabel):
        return error_response(409, str(exc), label_id=exc.label_id, current_version=exc.current_version)

    @app.errorhandler(NotFound)
    def _not_found(exc: NotFound):
        return error_response(404, str(exc))

    @app.errorhandler(ModelUnavailable)
    def _no_model(exc: ModelUnavailable):
        return error_response(503, str(exc))  # the server's setup, not the request, is at fault

    @app.errorhandler(SearchTooSlow)
    def _too_slow(exc: SearchTooSlow):
        return error_response(503, str(exc))  # the server's load, not the request, is at fault

    @app.errorhandler(LabelerError)
    def _user_error(exc: LabelerError):
        if (full := disk_full(exc)) is not None:  # wrapped in a typed error, still the machine's state
            app.logger.error("%s on %s", full, request.path)
            return error_response(507, str(full))
        return error_response(400, str(exc))

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException):
        return error_response(exc.code or 500, exc.description or exc.name)

    @app.errorhandler(Exception)
    def _crash(exc: Exception):
        if (full := disk_full(exc)) is not None:
            app.logger.error("%s on %s", full, request.path)
            return error_response(507, str(full))
        app.logger.exception("unhandled error on %s", request.path)
        return error_response(500, "internal error; the details are in the server log")
