"""Lighter pages on the wire: gzip for text answers, and static files a browser keeps for a year.

Static files get their content's hash in the URL (``/static/style.css?v=<sha256[:12]>``, added by
a ``url_defaults`` hook, so templates just call ``url_for('static', ...)``). A request whose ``v``
is the file's hash now is answered with a year's ``immutable`` caching; any other (no ``v``, an
old one) must revalidate (``no-cache``, with the ETag), so an edited file is never served stale.

JSON answers are encoded by orjson (a search answer of 20 hits carries about 160 labels; the
standard library's encoder took a fifth of its time), with Flask's own rules for the types orjson
leaves to it, so the same objects serialise to the same values.

Compression is these few lines rather than flask-compress, which would bring brotli and zstd
builds into the server's dependencies for what gzip already does well on HTML, CSS, JS and JSON.
"""

from __future__ import annotations

import gzip
import hashlib
import os
from pathlib import Path

import orjson
from flask import Flask, Response, request
from flask.json.provider import DefaultJSONProvider

IMMUTABLE_MAX_AGE = 365 * 24 * 3600
COMPRESSIBLE = {"text/html", "text/css", "text/plain", "text/javascript", "application/javascript",
                "application/json", "image/svg+xml"}
MIN_COMPRESS_BYTES = 512  # below this the gzip header eats the gain
GZIP_LEVEL = 6

_digests: dict[str, tuple[tuple[int, int], str]] = {}  # path -> ((mtime_ns, size), digest)


def static_digest(folder: str, filename: str) -> str | None:
    """The first 12 hex digits of ``folder/filename``'s SHA-256, None when it is no file there.

    Cached per file until its mtime or size changes, so an edit shows at once while developing.
    """
    path = os.path.join(folder, filename)
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    key = (st.st_mtime_ns, st.st_size)
    cached = _digests.get(path)
    if cached and cached[0] == key:
        return cached[1]
    try:
        digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()[:12]
    except OSError:  # a folder, or unreadable
        return None
    _digests[path] = (key, digest)
    return digest


def _cache_static(app: Flask, response: Response) -> None:
    filename = (request.view_args or {}).get("filename")
    if response.status_code not in (200, 304) or not filename:
        return
    version = request.args.get("v")
    if version and version == static_digest(app.static_folder, filename):
        response.cache_control.public = True
        response.cache_control.max_age = IMMUTABLE_MAX_AGE
        response.cache_control.immutable = True
        response.cache_control.no_cache = None
    else:
        response.cache_control.no_cache = True  # revalidate: the ETag makes that a 304
        response.cache_control.max_age = None


def _compress(response: Response) -> Response:
    if response.mimetype not in COMPRESSIBLE:
        return response
    response.vary.add("Accept-Encoding")
    if (response.status_code < 200 or response.status_code in (204, 206, 304) or "Content-Encoding" in response.headers
            or not request.accept_encodings["gzip"] or request.method == "HEAD"):
        return response
    if response.is_streamed and not response.direct_passthrough:
        return response  # a generator: compressing would buffer it all
    response.direct_passthrough = False  # a static file: small, read it whole
    data = response.get_data()
    if len(data) < MIN_COMPRESS_BYTES:
        return response
    response.set_data(gzip.compress(data, GZIP_LEVEL, mtime=0))
    response.headers["Content-Encoding"] = "gzip"
    response.headers.pop("Accept-Ranges", None)  # byte ranges of the identity body no longer apply
    etag, weak = response.get_etag()
    if etag and not weak:
        response.set_etag(etag, weak=True)  # same meaning, different bytes; If-None-Match compares weakly
    return response


class JSONProvider(DefaultJSONProvider):
    """Flask's JSON provider with orjson doing the encoding.

    Dates go through Flask's default (HTTP dates) as before; keys keep their insertion order
    (``id`` first) instead of being sorted; calls with options (``indent``, say) take the
    standard library's path unchanged.
    """

    _options = orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS

    def _encode(self, obj) -> bytes:
        try:
            return orjson.dumps(obj, default=self.default, option=self._options)
        except orjson.JSONEncodeError:  # what orjson refuses (an int beyond 64 bits, say): as before
            return super().dumps(obj).encode()

    def dumps(self, obj, **kwargs) -> str:
        if kwargs:
            return super().dumps(obj, **kwargs)
        return self._encode(obj).decode()

    def response(self, *args, **kwargs) -> Response:
        obj = self._prepare_response_obj(args, kwargs)
        if self._app.debug:  # indented, as Flask's debug answers are
            return super().response(obj)
        return self._app.response_class(self._encode(obj) + b"\n", mimetype=self.mimetype)


def init_app(app: Flask) -> None:
    """Register before every other ``after_request`` hook: Flask runs them in reverse, so the
    compression sees the final headers and body."""

    @app.url_defaults
    def _static_version(endpoint: str, values: dict) -> None:
        if endpoint == "static" and "v" not in values and "filename" in values:
            digest = static_digest(app.static_folder, values["filename"])
            if digest:
                values["v"] = digest

    app.json = JSONProvider(app)

    @app.after_request
    def _deliver(response: Response) -> Response:
        if request.endpoint == "static":
            _cache_static(app, response)
        return _compress(response)
