"""Slow clients cannot shut the server: 200 half-sent requests and 8 long searches while a real
user logs in and opens the queue, on the real ``serve`` (waitress) over real sockets."""

from __future__ import annotations

import http.client
import os
import re
import socket
import threading
import time
import urllib.parse

import pytest

from labeler.store import db, users
from tests.cli import manage_argv, serving
from tests.web.conftest import PASSWORD, Users

HALF_OPEN = 200


def half_open(port: int, count: int) -> list[socket.socket]:
    """``count`` connections that each sent the start of a request and then nothing."""
    held = []
    for _ in range(count):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(b"GET /auth/login HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
        held.append(s)
    return held


def _request(port: int, method: str, path: str, body: str | None = None, headers: dict | None = None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.getheader("Set-Cookie") or "", response.read().decode("utf-8", "replace")
    finally:
        conn.close()


def _log_in_and_open_the_queue(port: int) -> tuple[float, int]:
    """A real user's login through the form, then the queue page; (seconds taken, queue status)."""
    started = time.monotonic()
    status, cookie, page = _request(port, "GET", "/auth/login")
    assert status == 200
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    cookie = cookie.split(";")[0]
    form = urllib.parse.urlencode({"username": Users.reviewer, "password": PASSWORD, "csrf_token": token})
    status, new_cookie, _ = _request(port, "POST", "/auth/login", form, {
        "Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded"})
    assert status == 302, status
    status, _, _ = _request(port, "GET", "/review?group=concept", headers={"Cookie": new_cookie.split(";")[0]})
    return time.monotonic() - started, status


@pytest.mark.slow
def test_half_open_connections_and_long_searches_do_not_lock_out_a_real_user(web_config):
    with db.session_scope(web_config) as s:
        token = users.issue_token(s, Users.admin)
    env = {**os.environ, "LABELER_SECRET_KEY": "connections-test"}
    with serving(manage_argv("--home", web_config.home, "--model", web_config.model, "serve", "--processes", "1"),
                 env=env) as server:
        held = half_open(server.port, HALF_OPEN)  # waitress's own default allowed 100 connections in all
        query = urllib.parse.urlencode({"q": ("a hammer on a workbench " * 50)[:1000], "k": 50})
        answers: list[int] = []

        def search() -> None:
            answers.append(_request(server.port, "GET", f"/api/search?{query}", None,
                                    {"Authorization": f"Bearer {token}"})[0])

        searches = [threading.Thread(target=search) for _ in range(8)]
        try:
            for t in searches:
                t.start()
            seconds, status = _log_in_and_open_the_queue(server.port)
        finally:
            for t in searches:
                t.join(timeout=60)
            for s in held:
                s.close()
        assert status == 200
        # One user's searches past LABELER_SEARCHES_PER_USER (2) at once are refused at once, not
        # queued on the request threads (503: a search past its time budget on a loaded machine).
        assert len(answers) == 8 and set(answers) <= {200, 429, 503} and 429 in answers, answers
        print(f"login and queue page with {HALF_OPEN} half-open connections and 8 searches: {seconds:.2f} s")


@pytest.mark.slow
def test_a_silent_connection_is_closed_after_the_channel_timeout(web_config):
    env = {**os.environ, "LABELER_SECRET_KEY": "connections-test", "LABELER_CHANNEL_TIMEOUT": "2"}
    with serving(manage_argv("--home", web_config.home, "--model", web_config.model, "serve", "--processes", "1"),
                 env=env) as server:
        [silent] = half_open(server.port, 1)
        silent.settimeout(30)  # waitress checks its channels now and then: well past the 2 s
        try:
            assert silent.recv(1024) == b""  # closed by the server, not by us
        finally:
            silent.close()


@pytest.mark.slow
def test_the_connection_limit_is_where_waitress_stops_accepting(web_config):
    """LABELER_CONNECTION_LIMIT at its edge. waitress counts its own listening socket and wake-up
    pipe among the connections, so a limit of 5 serves 3 clients at once: with 2 held, a request
    is answered; with 3 held, the next one waits (accepted by the kernel, never read) until one closes."""
    env = {**os.environ, "LABELER_SECRET_KEY": "connections-test", "LABELER_CONNECTION_LIMIT": "5"}
    with serving(manage_argv("--home", web_config.home, "--model", web_config.model, "serve", "--processes", "1"),
                 env=env) as server:
        held = half_open(server.port, 2)
        try:
            time.sleep(0.5)  # the server's loop has taken them in
            assert _request(server.port, "GET", "/auth/login")[0] == 200  # the third connection
            held += half_open(server.port, 1)
            time.sleep(0.5)
            waiting = http.client.HTTPConnection("127.0.0.1", server.port, timeout=3)
            with pytest.raises(TimeoutError):  # the fourth
                waiting.request("GET", "/auth/login")
                waiting.getresponse()
            waiting.close()
            held.pop().close()
            time.sleep(1.0)
            assert _request(server.port, "GET", "/auth/login")[0] == 200  # room again
        finally:
            for s in held:
                s.close()
