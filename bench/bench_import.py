#!/usr/bin/env python
"""Peak memory and time of ``import-labels`` on a large file, this tree against a baseline revision
in the same run (issue 21: importing 1M rows took 965 MB).

The case is the round trip: re-importing a reviewed export of ``--rows`` images after a few edits.
From HOME's catalog (bench_scale's synthetic home, every group labeled) it writes ``--rows`` rows
of ``--group`` by image id, each row a different image, with the model's value except every
``--changed-every``-th row, changed to another option. Then, for the baseline revision (a
temporary git worktree) and this tree in turn: a fresh copy of HOME's catalog whose ``--group``
labels are marked accepted (as after a review; not timed), the real ``manage.py import-labels
FILE --json`` on it, its peak resident memory (``wait4``'s ru_maxrss) and wall time. The changed
rows are imported as corrections, the rest are unchanged; both reports must agree. Prints the
ratios this/baseline.

    nice .venv/bin/python bench/bench_import.py HOME --rows 1000000 [--format csv|labelstudio]
        [--baseline main] [--work DIR] [--json]

HOME is never written: each run works on a copy of its catalog under ``--work`` (deleted after).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def write_file(home: Path, out: Path, rows: int, group: str, fmt: str, every: int) -> int:
    """``rows`` reviewed values of ``group`` from HOME's labels; returns how many were written."""
    con = sqlite3.connect(f"file:{home / 'catalog.db'}?mode=ro", uri=True)
    options = [v for (v,) in con.execute('SELECT DISTINCT predicted FROM labels WHERE "group" = ? '
                                         'AND predicted IS NOT NULL ORDER BY 1', (group,))]
    cursor = con.execute('SELECT image_id, predicted FROM labels WHERE "group" = ? AND predicted IS NOT NULL '
                         'ORDER BY image_id LIMIT ?', (group, rows))
    written = 0
    with out.open("w", newline="") as fh:
        writer = csv.writer(fh) if fmt == "csv" else None
        if writer:
            writer.writerow(["image_id", group])
        else:
            fh.write("[")
        for image_id, predicted in cursor:
            value = options[(options.index(predicted) + 1) % len(options)] if written % every == every - 1 else predicted
            if writer:
                writer.writerow([image_id, value])
            else:
                task = {"id": written, "data": {"image_id": image_id},
                        "annotations": [{"result": [{"from_name": group, "to_name": "image", "type": "choices",
                                                     "value": {"choices": [value]}}]}]}
                fh.write(("," if written else "") + json.dumps(task))
            written += 1
        if not writer:
            fh.write("]")
    con.close()
    return written


def run_import(code: Path, home: Path, work: Path, source: Path, group: str) -> dict:
    """``import-labels`` by ``code``'s manage.py on a fresh copy of HOME's catalog, ``group`` reviewed."""
    copy = work / "home"
    if copy.exists():
        shutil.rmtree(copy)
    copy.mkdir()
    shutil.copyfile(home / "catalog.db", copy / "catalog.db")
    con = sqlite3.connect(copy / "catalog.db")
    con.execute("UPDATE labels SET status = 'accepted', value = predicted WHERE \"group\" = ? "
                "AND predicted IS NOT NULL", (group,))
    con.commit()
    con.close()
    cmd = [sys.executable, str(code / "manage.py"), "--home", str(copy), "--model", "labeler-tiny",
           "import-labels", str(source), "--json"]
    started = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        process = subprocess.Popen(cmd, cwd=code, stdout=out, stderr=err)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    shutil.rmtree(copy)
    code_ = os.waitstatus_to_exitcode(status)
    if code_ != 0:
        raise SystemExit(f"{code}: import-labels exited {code_}: {stderr.strip()[-2000:]}")
    report = json.loads(stdout)
    return {"seconds": round(seconds, 1), "peak_mb": round(usage.ru_maxrss / 1024), "imported": report["imported"],
            "unchanged": report["unchanged"], "corrected": report["corrected"]}


def cpu_name() -> str:
    """The CPU's model name (as ``lscpu`` says it), for the numbers' context."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("home", type=Path)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--group", default="concept")
    ap.add_argument("--changed-every", type=int, default=100, help="every N-th row is a correction [100]")
    ap.add_argument("--format", choices=("csv", "labelstudio"), default="csv")
    ap.add_argument("--baseline", default="main", help="git revision to compare with [main]")
    ap.add_argument("--work", type=Path, default=None, help="scratch folder [a temporary one beside HOME]")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-import-", dir=args.work or args.home.parent))
    baseline = work / "baseline"
    try:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(baseline), args.baseline],
                       check=True, capture_output=True)
        source = work / ("rows.csv" if args.format == "csv" else "tasks.json")
        rows = write_file(args.home, source, args.rows, args.group, args.format, args.changed_every)
        results = {"baseline": run_import(baseline, args.home, work, source, args.group),
                   "this": run_import(ROOT, args.home, work, source, args.group)}
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(baseline)], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    base, this = results["baseline"], results["this"]
    if (base["imported"], base["unchanged"]) != (this["imported"], this["unchanged"]):
        raise SystemExit(f"the imports disagree: baseline {base}, this tree {this}")
    out = {"rows": rows, "format": args.format, "baseline_revision": args.baseline, **results,
           "peak_ratio": round(this["peak_mb"] / base["peak_mb"], 3),
           "time_ratio": round(this["seconds"] / base["seconds"], 3),
           "cpu": cpu_name(), "load": [round(x, 1) for x in os.getloadavg()]}
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(f"import-labels, {rows} {args.format} rows ({out['cpu']}, load {out['load'][0]:.1f}):")
    for name in ("baseline", "this"):
        r = results[name]
        print(f"  {name:8s} peak {r['peak_mb']:6d} MB  {r['seconds']:8.1f} s  imported {r['imported']}, "
              f"unchanged {r['unchanged']}")
    print(f"  ratio this/baseline: peak memory {out['peak_ratio']}, time {out['time_ratio']}")


if __name__ == "__main__":
    main()
