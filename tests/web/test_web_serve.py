"""``manage.py serve``: the real waitress server on a real socket."""

from __future__ import annotations

import os

import pytest

from labeler import db, users
from tests.cli import manage_argv, serving
from tests.web.conftest import Users


@pytest.mark.slow
def test_serve_runs_waitress_on_localhost(web_config):
    with db.session_scope(web_config) as s:
        token = users.issue_token(s, Users.reviewer)
    env = {**os.environ, "LABELER_SECRET_KEY": "serve-test"}
    with serving(manage_argv("--home", web_config.home, "--model", web_config.model, "serve"), env=env) as server:
        status, body = server.get("/auth/login")
        assert status == 200 and b'data-testid="login-form"' in body
        assert server.get("/")[0] == 302
        assert server.get("/images/../../etc/passwd")[0] == 404
        assert server.get("/static/../labeler/db.py")[0] == 404
        status, body = server.get("/api/stats", {"Authorization": f"Bearer {token}"})
        assert status == 200 and b'"concept"' in body
        assert server.get("/static/style.css")[0] == 200
        stderr = server.stop()
    assert "serving" in stderr
