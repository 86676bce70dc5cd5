"""``manage.py serve``: the real waitress server on a real socket."""

from __future__ import annotations

import http.client
import json
import os

import pytest

from labeler.store import db, users
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
        assert server.get("/static/../labeler/store/db.py")[0] == 404
        status, body = server.get("/api/stats", {"Authorization": f"Bearer {token}"})
        assert status == 200 and b'"concept"' in body
        assert server.get("/static/style.css")[0] == 200
        stderr = server.stop()
    cores = min(8, len(os.sched_getaffinity(0)))
    assert f"serving {web_config.home}" in stderr and f" in {cores} process" in stderr  # one per core by default


def _children(pid: int) -> set[int]:
    """The live child processes of ``pid``, from /proc."""
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] != "Z":
                found.add(int(entry))
    return found


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.slow
def test_serve_processes_share_the_port_and_stop_together(web_config):
    with db.session_scope(web_config) as s:
        token = users.issue_token(s, Users.reviewer)
    env = {**os.environ, "LABELER_SECRET_KEY": "serve-test"}
    argv = manage_argv("--home", web_config.home, "--model", web_config.model, "serve", "--processes", "2")
    with serving(argv, env=env) as server:
        workers = _children(server.process.pid)
        assert len(workers) == 2
        bearer = {"Authorization": f"Bearer {token}"}
        for _ in range(20):  # new connections each time: the kernel spreads them over both workers
            status, body = server.get("/api/search?q=hammer&k=5", bearer)
            assert status == 200 and body.count(b'"image_id"') >= 5
        assert server.get("/api/stats", bearer)[0] == 200
        server.stop()
        assert server.process.returncode == 0
    assert not any(_alive(pid) for pid in workers)


@pytest.mark.slow
def test_a_serve_process_that_dies_stops_the_others_with_one_line(web_config):
    env = {**os.environ, "LABELER_SECRET_KEY": "serve-test"}
    argv = manage_argv("--home", web_config.home, "--model", web_config.model, "serve", "--processes", "2")
    with serving(argv, env=env) as server:
        first, second = sorted(_children(server.process.pid))
        os.kill(first, 9)
        assert server.process.wait(timeout=30) == 1
        assert not _alive(second)
        lines = server.stderr.strip().splitlines()
    assert lines[-1] == "error: a serve worker stopped (signal 9); the others were stopped too"


def _post(server, path: str, body: dict, headers: dict) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.request("POST", path, body=json.dumps(body), headers={**headers, "Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def test_leases_and_their_release_hold_across_serve_processes(web_config):
    """Two reviewers' queues, each request on a new connection (spread over both workers): their
    claims never overlap, and a release made through one worker frees the cards for the other."""
    with db.session_scope(web_config) as s:
        rita = {"Authorization": f"Bearer {users.issue_token(s, Users.reviewer)}"}
        rob = {"Authorization": f"Bearer {users.issue_token(s, Users.second)}"}
    env = {**os.environ, "LABELER_SECRET_KEY": "serve-test"}
    argv = manage_argv("--home", web_config.home, "--model", web_config.model, "serve", "--processes", "2")
    queue = "/api/review/queue?group=palette&status=proposed&sort=id"
    with serving(argv, env=env) as server:
        mine: set[int] = set()
        for _ in range(4):
            status, body = server.get(queue, rita)
            assert status == 200
            mine |= set(json.loads(body)["claimed"])
        assert len(mine) == 60  # the small group is all hers, whichever worker answered
        for _ in range(4):
            assert json.loads(server.get(queue, rob)[1])["cards"] == []
        status, body = _post(server, "/api/review/release", {"ids": sorted(mine)}, rita)
        assert status == 200 and json.loads(body) == {"released": 60}
        theirs = json.loads(server.get(queue, rob)[1])
        assert theirs["cards"] and set(theirs["claimed"]) <= mine
        assert json.loads(server.get(queue, rita)[1])["cards"] == []  # now his
        server.stop()
