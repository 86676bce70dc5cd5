"""``manage.py serve``: the real waitress server on a real socket."""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import time

import pytest

from labeler import db, users
from tests.cli import ROOT, manage_argv
from tests.web.conftest import Users



def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(port: int, path: str, headers: dict | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path, headers=headers or {})  # sent as is: no client-side .. folding
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


@pytest.mark.slow
def test_serve_runs_waitress_on_localhost(web_config):
    with db.session_scope(web_config) as s:
        token = users.issue_token(s, Users.reviewer)
    port = _free_port()
    env = {**os.environ, "LABELER_SECRET_KEY": "serve-test"}
    server = subprocess.Popen(manage_argv("--home", web_config.home, "--model", web_config.model, "serve",
                                          "--port", port),
                              cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(300):  # wait for the socket; the server imports torch first
            if server.poll() is not None:
                pytest.fail(f"serve exited: {server.stderr.read()}")
            try:
                status, body = _get(port, "/auth/login")
                break
            except OSError:
                time.sleep(0.2)
        else:
            pytest.fail("serve did not start listening")
        assert status == 200 and b'data-testid="login-form"' in body
        assert _get(port, "/")[0] == 302
        assert _get(port, "/images/../../etc/passwd")[0] == 404
        assert _get(port, "/static/../labeler/db.py")[0] == 404
        status, body = _get(port, "/api/stats", {"Authorization": f"Bearer {token}"})
        assert status == 200 and b'"concept"' in body
        assert _get(port, "/static/style.css")[0] == 200
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert "serving" in server.stderr.read()
