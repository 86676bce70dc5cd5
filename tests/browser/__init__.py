"""Real-browser tests: Playwright driving Chromium against the real server (``pytest -m browser``)."""
