"""Serving the app with waitress, a production WSGI server; ``serve`` and ``demo`` both end here."""

from __future__ import annotations

import logging

from flask import Flask

from ..errors import ServeError


def serve(app: Flask, host: str, port: int, threads: int = 8) -> None:
    """Serve ``app`` on ``host:port`` until interrupted."""
    from waitress import create_server

    logging.basicConfig()  # waitress logs through logging, as waitress.serve sets it up
    try:
        server = create_server(app, host=host, port=port, threads=threads, ident="labeler")
    except OSError as exc:  # the port is taken, or the address is not this machine's
        raise ServeError(f"cannot serve on {host}:{port}: {exc}") from exc
    server.print_listen("Serving on http://{}:{}")
    server.run()
