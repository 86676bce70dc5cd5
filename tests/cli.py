"""Running ``manage.py``: in-process through click (fast) or in a real subprocess (the real entry point)."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from click.testing import CliRunner

from labeler.cli import cli

ROOT = Path(__file__).resolve().parent.parent


class Cli:
    """Runs ``manage.py`` in-process (fast: the model loads once) against one home folder."""

    def __init__(self, home: Path, model: str | None):
        self.home = home
        self.model = model
        self.runner = CliRunner()

    def __call__(self, *args: str, expect: int | None = 0, stdin: str | None = None):
        prefix = ["--home", str(self.home)] + (["--model", self.model] if self.model else [])
        result = self.runner.invoke(cli, prefix + [str(a) for a in args], input=stdin, catch_exceptions=False)
        if expect is not None:
            assert result.exit_code == expect, (result.exit_code, result.output)
        return result

    def json(self, *args: str, expect: int | None = 0):
        result = self(*args, "--json", expect=expect)
        return json.loads(result.stdout)


def manage_argv(*args) -> list[str]:
    """The command line of ``python manage.py ARGS``, for a server started with ``subprocess.Popen``."""
    return [sys.executable, str(ROOT / "manage.py"), *map(str, args)]


def manage(*args, env: dict | None = None, stdin: str | None = None, expect: int | None = None,
           timeout: float | None = None) -> subprocess.CompletedProcess:
    """Runs ``python manage.py ARGS`` in a real subprocess; with ``expect``, checks its exit status."""
    done = subprocess.run(manage_argv(*args), cwd=ROOT, input=stdin, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=timeout)
    if expect is not None:
        assert done.returncode == expect, f"manage.py {' '.join(map(str, args))} exited {done.returncode}: " \
                                          f"{done.stderr.strip()[-2000:]}"
    return done


class Server:
    """A real ``serve`` process on a free localhost port; ``get`` sends raw GETs to it."""

    def __init__(self, argv: list[str], cwd: Path, env: dict):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.process = subprocess.Popen([*map(str, argv), "--port", str(self.port)], cwd=cwd, env=env,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        # Drained as it comes: a full pipe (waitress logs under load) would stall every request.
        self._stderr: list[str] = []
        self._reader = threading.Thread(target=lambda: self._stderr.extend(self.process.stderr), daemon=True)
        self._reader.start()

    @property
    def stderr(self) -> str:
        return "".join(self._stderr)

    def get(self, path: str, headers: dict | None = None) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request("GET", path, headers=headers or {})  # sent as is: no client-side .. folding
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def wait_until_listening(self) -> None:
        for _ in range(300):  # the server imports torch before it listens
            if self.process.poll() is not None:
                self._reader.join(timeout=5)
                raise AssertionError(f"serve exited: {self.stderr}")
            try:
                self.get("/auth/login")
                return
            except OSError:
                time.sleep(0.2)
        raise AssertionError("serve did not start listening")

    def stop(self) -> str:
        """Stop the server; returns what it wrote on stderr."""
        self.process.terminate()
        self.process.wait(timeout=30)
        self._reader.join(timeout=5)
        return self.stderr


@contextmanager
def serving(argv: list, cwd: Path = ROOT, env: dict | None = None) -> Iterator[Server]:
    """``argv`` (a ``serve`` command line without ``--port``) running until the block ends; ``env`` (default:
    this process's) is its whole environment."""
    server = Server(argv, cwd, dict(os.environ) if env is None else env)
    try:
        server.wait_until_listening()
        yield server
    finally:
        if server.process.poll() is None:
            server.stop()
