"""Serving the app with waitress, a production WSGI server; ``serve`` and ``demo`` both end here.

One waitress process runs requests in threads, so they share one interpreter lock: a search
answer is a few milliseconds of Python, and eight clients got no more answers a second than one.
``processes`` > 1 forks that many processes after binding the port, each running its own waitress
on the shared listening socket (waitress's ``sockets`` option), and the kernel hands each new
connection to one of them. Every process opens its own catalog connections and loads its own copy
of the index, so memory grows with the count (see the README before raising it at a million images).
"""

from __future__ import annotations

import logging
import os
import signal
import socket

from flask import Flask

from ..errors import ServeError
from .rate_limit import fit_search_slots

try:
    import resource
except ImportError:  # not on this system (Windows): the process's own open-file limit stands
    resource = None


def waitress_settings(app: Flask) -> dict:
    """waitress's limits from the app's config (``LABELER_CONNECTION_LIMIT``, ``LABELER_CHANNEL_TIMEOUT``).

    Requests are read by waitress's event loop, not by the threads, so a slow or half-sent request
    costs one connection and no thread; the limit is what bounds them, and the timeout closes the
    silent ones. The process's open-file limit is raised to fit (each connection is a descriptor).
    """
    config = app.extensions["labeler"].config
    _fit_open_files(config.connection_limit + 256)  # the catalog, the index, the images being sent
    # cleanup_interval: how often waitress looks for silent connections (its default, 30 s, would
    # let a short timeout wait that long)
    return {"connection_limit": config.connection_limit, "channel_timeout": config.channel_timeout,
            "cleanup_interval": max(1, min(30, config.channel_timeout // 2)), "ident": "labeler"}


def _fit_open_files(wanted: int) -> None:
    if resource is None:
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            pass


def serve(app: Flask, host: str, port: int, threads: int = 8, processes: int = 1) -> None:
    """Serve ``app`` on ``host:port`` until interrupted, in ``processes`` processes of ``threads`` threads."""
    from waitress import create_server

    logging.basicConfig()  # waitress logs through logging, as waitress.serve sets it up
    settings = waitress_settings(app)
    fit_search_slots(app, threads)  # long searches never hold more than half the request threads
    if processes > 1 and not hasattr(os, "fork"):
        raise ServeError("--processes above 1 needs a system with fork (Linux, macOS); use --processes 1")
    try:
        if processes <= 1:
            server = create_server(app, host=host, port=port, threads=threads, **settings)
        else:
            listener = socket.create_server((host, port), family=_family(host), backlog=1024)
    except OSError as exc:  # the port is taken, or the address is not this machine's
        raise ServeError(f"cannot serve on {host}:{port}: {exc}") from exc
    if processes <= 1:
        server.print_listen("Serving on http://{}:{}")
        server.run()
        return
    _prefork(app, listener, threads, processes, settings)


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _prefork(app: Flask, listener: socket.socket, threads: int, processes: int, settings: dict) -> None:
    """Fork ``processes`` worker processes serving ``listener``; stop them all on SIGINT/SIGTERM or when one dies."""
    from ..store import db
    from waitress import create_server

    db.dispose_engines()  # no catalog connection may cross the fork
    children: list[int] = []
    stopping = []  # set once the workers are being stopped on purpose

    def stop(_signum, _frame) -> None:
        stopping.append(True)
        for pid in children:
            _kill(pid, signal.SIGTERM)

    # before forking: a Ctrl+C during the forks still reaches every worker started so far
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    for _ in range(processes):
        if stopping:
            break
        pid = os.fork()
        if pid == 0:  # a worker: its own waitress on the shared socket, until its parent stops it
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            code = 0
            try:
                create_server(app, sockets=[listener], threads=threads, **settings).run()
            except BaseException:  # noqa: BLE001  (a worker never returns into its parent's code)
                logging.getLogger("labeler").exception("a serve worker stopped")
                code = 1
            finally:
                os._exit(code)
        children.append(pid)
    host, port = listener.getsockname()[:2]
    print(f"Serving on http://{host}:{port} with {processes} processes", flush=True)

    died = None  # the wait status of a worker that stopped on its own
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        if pid not in children:
            continue
        children.remove(pid)
        if not stopping:  # a worker died on its own: the rest go too, and serve fails
            died = status
            stop(None, None)
    listener.close()
    if died is not None:
        raise ServeError(f"a serve worker stopped ({_describe(died)}); the others were stopped too")


def _kill(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"signal {os.WTERMSIG(status)}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"
