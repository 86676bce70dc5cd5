"""``serve``: the web UI and the JSON API under waitress."""

from __future__ import annotations

import click

from .context import get_config


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; use 0.0.0.0 only behind HTTPS (and set LABELER_SECURE_COOKIES=1).")
@click.option("--port", default=5000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--threads", default=8, show_default=True, type=click.IntRange(1, 64), help="Request threads per process.")
@click.option("--processes", default=1, show_default=True, type=click.IntRange(1, 64),
              help="Server processes sharing the port (one per core scales search; each loads its own index).")
def serve(host: str, port: int, threads: int, processes: int) -> None:
    """Serve the review UI and the JSON API with waitress (a production WSGI server)."""
    from ..web import create_app  # lazy: Flask only for the commands that serve
    from ..web.server import serve as serve_app

    config = get_config()
    app = create_app(config)
    click.echo(f"labeler: serving {config.home} on http://{host}:{port}/ (Ctrl+C stops)", err=True)
    serve_app(app, host, port, threads, processes)


COMMANDS = [serve]
