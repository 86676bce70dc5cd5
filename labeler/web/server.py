"""Serving the app with waitress, a production WSGI server; ``serve`` and ``demo`` both end here."""

from __future__ import annotations

from flask import Flask


def serve(app: Flask, host: str, port: int, threads: int = 8) -> None:
    """Serve ``app`` on ``host:port`` until interrupted."""
    from waitress import serve as waitress_serve

    waitress_serve(app, host=host, port=port, threads=threads, ident="labeler")
