#!/usr/bin/env python
"""Retake the README's screenshots (docs/screenshots/*.png) with the real browser suite.

    .venv/bin/python scripts/screenshots.py

Builds a fresh demo collection with labeler-tiny, serves it, and runs
``tests/browser/test_screenshots.py`` with ``LABELER_SCREENSHOT_DIR=docs/screenshots``.
Needs Debian's Chromium (/usr/bin/chromium) and the labeler-tiny weights.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "screenshots"
WEIGHTS = ROOT / "labeler" / "models" / "labeler-tiny" / "open_clip_model.safetensors"


def main() -> int:
    if not WEIGHTS.exists():
        print(f"error: {WEIGHTS} is missing; the README shows labeler-tiny, so train it first "
              "(scripts/train_demo_model.py)", file=sys.stderr)
        return 2
    env = {**os.environ, "LABELER_SCREENSHOT_DIR": str(OUT)}
    env.pop("LABELER_TEST_MODEL", None)  # always the bundled model
    env.pop("LABELER_BROWSER_HOME", None)  # always a fresh collection
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "tests/browser/test_screenshots.py"], cwd=ROOT, env=env)
    if done.returncode == 0:
        print(f"screenshots written to {OUT}")
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
