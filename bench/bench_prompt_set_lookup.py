#!/usr/bin/env python
"""How long two catalog lookups take at scale: a group's prompt set, and the label groups.

Opens HOME's catalog read-only (SQLite, ``immutable``: the shared 1M home is never written) and
times, for ``--group``, the stamp lookup ``prompt_set_of_labels`` now makes (a keyed ``settings``
row, then one label that still carries it) and, as the baseline in the same run, the query it made
before (the group's labels sorted by ``updated_at``, which has no index); and the label groups
by ``label_groups``'s loose index scan against ``SELECT DISTINCT "group"``.

    PYTHONPATH=. .venv/bin/python bench/bench_prompt_set_lookup.py /work/homes/1m [--group concept]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sqlite3
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("home", type=Path)
    ap.add_argument("--group", default="concept")
    args = ap.parse_args()
    con = sqlite3.connect(f"file:{args.home / 'catalog.db'}?mode=ro&immutable=1", uri=True)
    key = "labeling.stamp:" + hashlib.sha256(args.group.encode()).hexdigest()[:32]  # bulk._stamp_key
    t = time.perf_counter()
    raw = con.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
    stamped = json.loads(raw[0])["stamp"]["prompt_set_id"] if raw else None
    held = con.execute('SELECT id FROM labels WHERE "group" = ? AND prompt_set_id = ? LIMIT 1',
                       (args.group, stamped)).fetchone()
    stamp_s = time.perf_counter() - t
    t = time.perf_counter()
    sorted_id = con.execute('SELECT prompt_set_id FROM labels WHERE "group" = ? ORDER BY updated_at DESC, id DESC '
                            "LIMIT 1", (args.group,)).fetchone()
    sort_s = time.perf_counter() - t
    from labeler.store.stats import _GROUPS  # the statement label_groups runs

    t = time.perf_counter()
    jumped = [g for (g,) in con.execute(str(_GROUPS))]
    jump_s = time.perf_counter() - t
    t = time.perf_counter()
    distinct = [g for (g,) in con.execute('SELECT DISTINCT "group" FROM labels ORDER BY "group"')]
    distinct_s = time.perf_counter() - t
    labels = con.execute('SELECT count(*) FROM labels WHERE "group" = ?', (args.group,)).fetchone()[0]
    print(json.dumps({"group": args.group, "labels": labels, "stamp": stamped, "stamp_label": held and held[0],
                      "sorted": sorted_id and sorted_id[0], "stamp_s": round(stamp_s, 4), "sort_s": round(sort_s, 2),
                      "ratio": round(sort_s / max(stamp_s, 1e-6), 1), "groups": jumped,
                      "groups_same": jumped == distinct, "groups_jump_s": round(jump_s, 4),
                      "groups_distinct_s": round(distinct_s, 2),
                      "groups_ratio": round(distinct_s / max(jump_s, 1e-6), 1)}))


if __name__ == "__main__":
    main()
