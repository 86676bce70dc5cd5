# The two commands for a fresh machine (see README.md). Both set themselves up idempotently.
.PHONY: demo test setup

demo:  ## set up, build the demo collection, index and label it, serve the UI on 127.0.0.1:5000
	scripts/setup.sh
	.venv/bin/python manage.py demo

test:  ## set up (with test tools, Debian's chromium and postgresql), lint, and run every test, slow ones included
	scripts/setup.sh --test
	.venv/bin/python -m ruff check .
	LABELER_NO_SKIPS=1 .venv/bin/python -m pytest -q -n auto --dist worksteal

setup:
	scripts/setup.sh --test
