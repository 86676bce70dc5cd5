"""Real-browser fixtures: the demo collection, the real server (waitress) and Debian's Chromium.

Built once per test session: ``manage.py demo`` makes a small labeled demo collection, ``manage.py
user add`` makes the accounts, ``manage.py serve`` serves it on a free port of 127.0.0.1. Every
test gets fresh browser contexts (own cookies) at 1280×800. Tests share the one catalog, so each
test works on its own label group (see ``GROUP_OF``) and reads the state it starts from instead of
assuming it.

The model is the suite's ``model_spec`` (labeler-tiny). ``LABELER_BROWSER_HOME=DIR`` keeps the
built collection in DIR for faster reruns while developing.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest


playwright_api = pytest.importorskip("playwright.sync_api")
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright  # noqa: E402

from labeler.store import db  # noqa: E402
from tests.cli import ROOT, Cli, manage_argv  # noqa: E402

CHROMIUM = Path(os.environ.get("LABELER_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
VIEWPORT = {"width": 1280, "height": 800}
DEMO_COUNT = 120
DEMO_SEED = 5
PASSWORD = "correct horse battery staple"
# Two CPU cores shared with other work: give the page and the server room before failing.
TIMEOUT_MS = 20_000
SERVER_START_S = 90.0

# One label group per test module, so tests never decide on each other's labels.
GROUP_OF = {"keyboard": "concept", "correct": "material", "bulk_selected": "color",
            "bulk_threshold": "size", "conflict": "context", "detail": "handle",
            "flow": "orientation", "focus_mode": "palette", "history": "function",
            "search": "function", "prefs": "function",
            "lab_suggest": "function"}  # its adoptions save new versions of workshop into the home


class Accounts:
    admin = "ada"
    reviewer = "rita"
    second = "rob"  # a second reviewer working on the same labels at the same time


@dataclass(frozen=True)
class Demo:
    home: Path
    model: str
    url: str

    @property
    def world(self) -> Path:
        return self.home / "demo-world"

    @property
    def catalog(self) -> Path:
        return self.home / "catalog.db"

    def query(self, sql: str, *params) -> list[tuple]:
        """Read the catalog directly (read-only), the way another process would see it."""
        with sqlite3.connect(f"file:{self.catalog}?mode=ro", uri=True) as db:
            return db.execute(sql, params).fetchall()

    def user_id(self, name: str) -> int:
        return self.query("SELECT id FROM users WHERE name = ?", name)[0][0]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_until_serving(url: str, server: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"the server exited with {server.returncode}: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{url}/auth/login", timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.3)
    pytest.fail(f"the server did not answer on {url} within {SERVER_START_S:.0f} s: {log.read_text()[-2000:]}")


@pytest.fixture(scope="session")
def demo(tmp_path_factory, model_spec: str) -> Iterator[Demo]:
    """The demo collection, three accounts and the real server on a free port."""
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium, or set LABELER_CHROMIUM)")
    # LABELER_BROWSER_HOME keeps the built collection between runs (faster reruns while developing).
    kept = os.environ.get("LABELER_BROWSER_HOME")
    home = Path(kept) if kept else tmp_path_factory.mktemp("browser") / "home"
    if not (home / "catalog.db").exists():
        build_demo(home, model_spec, DEMO_COUNT, DEMO_SEED)

    with serving(home, model_spec) as url:
        yield Demo(home=home, model=model_spec, url=url)


def build_demo(home: Path, model_spec: str, count: int, seed: int) -> None:
    """``manage.py demo --no-serve`` of ``count`` images and the accounts, in this process (the
    model is already loaded here; tests/browser/test_main_job.py runs the real ``make demo``)."""
    Cli(home, model_spec).json("demo", "--count", count, "--seed", seed, "--no-serve")
    add_accounts(home, model_spec)


def add_accounts(home: Path, model_spec: str) -> None:
    """The admin and the two reviewers, with the suite's password."""
    cli = Cli(home, model_spec)
    for name, role in ((Accounts.admin, "admin"), (Accounts.reviewer, "reviewer"), (Accounts.second, "reviewer")):
        cli("user", "add", name, "--role", role, "--password-stdin", stdin=PASSWORD + "\n")
    db.dispose_engines()  # nothing of this process's left open on the catalog the server gets


@contextmanager
def serving(home: Path, model_spec: str) -> Iterator[str]:
    """``manage.py serve`` on ``home`` on a free port of 127.0.0.1; yields its URL, stops it after."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = home / "server.log"
    with log.open("w") as log_file:
        server = subprocess.Popen(manage_argv("--home", home, "--model", model_spec, "serve", "--port", port,
                                              "--threads", "4", "--processes", "1"), cwd=ROOT, stdout=log_file, stderr=subprocess.STDOUT)
    try:
        _wait_until_serving(url, server, log)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium, or set LABELER_CHROMIUM)")
    expect.set_options(timeout=TIMEOUT_MS)
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


class Contexts:
    """Makes browser contexts (separate cookie jars: separate people) and closes them at the end."""

    def __init__(self, browser: Browser, demo: Demo):
        self.browser = browser
        self.demo = demo
        self.opened: list[BrowserContext] = []

    def new(self) -> BrowserContext:
        context = self.browser.new_context(base_url=self.demo.url, viewport=VIEWPORT)
        context.set_default_timeout(TIMEOUT_MS)
        self.opened.append(context)
        return context

    def page(self, user: str | None = None) -> Page:
        """A fresh page in a fresh context, logged in as ``user`` when given."""
        page = self.new().new_page()
        if user is not None:
            login(page, user)
        return page

    def close(self) -> None:
        for context in self.opened:
            context.close()


@pytest.fixture
def contexts(browser: Browser, demo: Demo) -> Iterator[Contexts]:
    made = Contexts(browser, demo)
    yield made
    made.close()


def login(page: Page, user: str, password: str = PASSWORD, next_path: str | None = None) -> None:
    """Log in through the login form and wait until the page shows the user."""
    page.goto("/auth/login" + (f"?next={next_path}" if next_path else ""))
    page.get_by_test_id("login-username").fill(user)
    page.get_by_test_id("login-password").fill(password)
    page.get_by_test_id("login-submit").click()
    expect(page.get_by_test_id("current-user")).to_contain_text(user)


def api(page: Page, path: str) -> dict:
    """GET a JSON API path with the page's session cookie."""
    response = page.request.get(path)
    assert response.ok, (path, response.status, response.text())
    return response.json()


def queue_url(group: str, status: str = "proposed", sort: str = "id", value: str = "") -> str:
    return f"/review?group={group}&status={status}&sort={sort}&value={value}"


def wait_for_images(page: Page) -> None:
    """Load every image on the page (lazy ones too) and check none is broken."""
    page.evaluate("document.querySelectorAll('img[loading=lazy]').forEach((img) => { img.loading = 'eager'; })")
    # A function, not an expression: Playwright evals an expression, which the CSP (no unsafe-eval) refuses.
    page.wait_for_function("() => Array.from(document.images).every((img) => img.complete)")
    broken = page.evaluate("Array.from(document.images).filter((img) => !img.naturalWidth).map((img) => img.src)")
    assert not broken, f"images that did not load: {broken}"


__all__ = ["Accounts", "Contexts", "Demo", "GROUP_OF", "add_accounts", "build_demo", "api", "expect", "login",
           "queue_url", "serving", "wait_for_images"]
