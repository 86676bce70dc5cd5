"""The main job the way the README runs it: ``manage.py demo`` from the tree's root, default home.

Every other browser test serves an absolute temporary ``--home``, which hid that the default
``./instance`` served no thumbnail at all (Flask resolved the relative path against the package).
Here the tree's root is a temporary folder holding ``manage.py``, nothing names a home, and the
newcomer logs in with the password ``demo`` printed, opens the queue, and sees every thumbnail.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from tests.browser.conftest import CHROMIUM, wait_for_images
from tests.cli import ROOT

pytestmark = [pytest.mark.browser, pytest.mark.slow]

COUNT = 60  # the demo's own default is 2,000; the path through the code is the same
START_S = 300.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DemoProcess:
    """``python manage.py demo`` running in ``root``; its stdout is read as it comes."""

    def __init__(self, root: Path, port: int):
        env = {key: value for key, value in os.environ.items() if not key.startswith("LABELER_")}
        env["PYTHONUNBUFFERED"] = "1"  # the lines arrive as a terminal would show them, not at exit
        self.process = subprocess.Popen([sys.executable, "manage.py", "demo", "--count", str(COUNT),
                                         "--port", str(port)], cwd=root, env=env, text=True,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=lambda: self.lines.extend(self.process.stdout), daemon=True)
        self._reader.start()

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_for(self, pattern: str) -> re.Match:
        deadline = time.monotonic() + START_S
        while time.monotonic() < deadline:
            found = re.search(pattern, self.output)
            if found:
                return found
            if self.process.poll() is not None:
                self._reader.join(timeout=5)
                pytest.fail(f"manage.py demo exited {self.process.returncode}: {self.output[-3000:]}")
            time.sleep(0.3)
        pytest.fail(f"manage.py demo never printed {pattern!r}: {self.output[-3000:]}")

    def wait_until_serving(self, port: int) -> None:
        deadline = time.monotonic() + START_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self._reader.join(timeout=5)
                pytest.fail(f"manage.py demo exited {self.process.returncode}: {self.output[-3000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/auth/login", timeout=5):
                    return
            except OSError:
                time.sleep(0.3)
        pytest.fail(f"manage.py demo did not serve on port {port}: {self.output[-3000:]}")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def test_the_main_job_serves_every_thumbnail_from_the_default_home(tmp_path, browser):
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM}")
    root = tmp_path / "checkout"  # the tree's root as a newcomer has it; the package comes from the install
    root.mkdir()
    shutil.copy2(ROOT / "manage.py", root / "manage.py")
    port = _free_port()
    demo = DemoProcess(root, port)
    try:
        login = demo.wait_for(r"log in as '([^']+)' with password '([^']+)'")
        demo.wait_until_serving(port)
        name, password = login.group(1), login.group(2)
        assert (root / "instance" / "catalog.db").is_file(), "the demo did not use the default home ./instance"

        context = browser.new_context(base_url=f"http://127.0.0.1:{port}", viewport={"width": 1280, "height": 800})
        failed: list[str] = []
        context.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)
        page = context.new_page()
        page.goto("/auth/login")
        page.get_by_test_id("login-username").fill(name)
        page.get_by_test_id("login-password").fill(password)
        page.get_by_test_id("login-submit").click()
        page.get_by_test_id("current-user").wait_for()
        page.goto("/review?group=concept&status=proposed")
        thumbs = page.locator("img[src*='/thumb']")
        assert thumbs.count() > 0, "the queue shows no thumbnails"
        wait_for_images(page)
        assert not failed, f"answers of 400 and above: {failed}"
        context.close()
    finally:
        demo.stop()
