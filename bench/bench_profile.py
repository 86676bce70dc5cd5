#!/usr/bin/env python
"""Where an ``index`` run's time goes, thread by thread: a sampling profile of the real command.

Generates photo-like 1024x768 JPEGs (``labeler.encoding.probe_images.write_photos``, as bench_embed makes them) and random ViT-B-32 weights,
exports the ONNX towers once (apart from the run), then runs ``manage.py index PHOTOS`` under
py-spy (``--threads --idle``: every thread sampled whether it runs or waits). Each thread's
samples are put in the labeler function they were in (the innermost frame in ``labeler/``,
with the library call it was making), and waits (a queue, a future, a lock) are counted as
waiting. It prints, per thread role (main: walk, catalog and vector writes; decode threads;
the model thread), its share of the run's wall time per activity: the overlap of loading and
the model, and whether the model ever waits for input.

    .venv/bin/python bench/bench_profile.py [--images 300] [--mode fp32] [--rate 100] [--json]

Needs py-spy: ``pip install -e '.[bench]'``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from labeler.encoding.probe_images import write_photos  # noqa: E402

# A sample whose innermost frames are one of these is a thread waiting, not working.
WAITS = ("wait (threading.py", "result (concurrent/futures", "get (queue.py", "_worker (concurrent/futures",
         "acquire", "select (selectors.py", "sleep")
_FRAME = re.compile(r"^(?P<func>.+?) \((?P<file>[^:()]+)(?::\d+)?\)$")


def role(thread: str) -> str:
    if thread.startswith("labeler-model"):
        return "model thread"
    if thread.startswith("ThreadPoolExecutor"):
        return "decode threads"
    if thread == "MainThread":
        return "main thread"
    return "other"


def _labeler_frame(frames: list[str]) -> tuple[int, str] | None:
    """The innermost frame in ``labeler/``: (its depth, ``module.function``)."""
    for depth in range(len(frames) - 1, -1, -1):
        match = _FRAME.match(frames[depth])
        if match and "labeler/" in match["file"]:
            return depth, f"{Path(match['file']).stem}.{match['func']}"
    return None


def activity(frames: list[str]) -> str:
    """What a sample (outermost frame first) was doing: waiting (and where), or its innermost
    labeler function with the first library call below it."""
    found = _labeler_frame(frames)
    inner = ";".join(frames[-3:])
    if any(w in inner for w in WAITS) and (found is None or found[0] < len(frames) - 2):
        return f"waits in {found[1]}" if found else "idle (no work queued)"
    if found is None:
        return "outside labeler (start-up, imports)"
    depth, here = found
    below = _FRAME.match(frames[depth + 1]) if depth + 1 < len(frames) else None
    return f"{here} → {below['func']}" if below else here


def parse(raw: Path) -> dict[str, dict[str, Counter]]:
    """py-spy's raw output → {role: {thread: Counter(activity: samples)}}."""
    out: dict[str, dict[str, Counter]] = defaultdict(lambda: defaultdict(Counter))
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack.startswith("thread ("):
            continue
        _, _, rest = stack.partition("): ")
        thread, *frames = rest.split(";")
        out[role(thread)][thread][activity(frames)] += int(count)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--mode", default="fp32")
    parser.add_argument("--rate", type=int, default=100, help="samples per second per thread")
    parser.add_argument("--top", type=int, default=5, help="activities shown per thread role")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        raise SystemExit("error: py-spy is not installed; pip install -e '.[bench]'")
    with tempfile.TemporaryDirectory(prefix="bench_profile.") as tmp:
        tmp = Path(tmp)
        photos, cache = tmp / "photos", tmp / "encoders"
        write_photos(photos, args.images)
        import open_clip
        import torch

        from labeler.encoding.encoder import load_encoder

        weights = tmp / "vit-b-32-random.pt"
        torch.manual_seed(0)
        torch.save(open_clip.create_model("ViT-B-32").state_dict(), weights)
        spec = f"ViT-B-32:{weights}"
        if args.mode != "torch":
            load_encoder(spec, "cpu", args.mode, cache)  # the one-time export, not part of the profile
        env = {**os.environ, "PYTHONPATH": str(ROOT), "LABELER_ENCODER_CACHE": str(cache),
               "LABELER_ENCODER_MODE": args.mode}
        raw = tmp / "profile.txt"
        started = time.perf_counter()
        proc = subprocess.run([spy, "record", "-r", str(args.rate), "-f", "raw", "-o", str(raw), "--threads", "--idle",
                               "--", sys.executable, str(ROOT / "manage.py"), "--home", str(tmp / "home"),
                               "--model", spec, "index", str(photos), "--json"],
                              capture_output=True, text=True, env=env, cwd=ROOT)
        wall = time.perf_counter() - started
        if proc.returncode:
            raise SystemExit(f"error: the profiled index run failed:\n{proc.stderr[-2000:]}")
        roles = parse(raw)
    # the command's JSON, among py-spy's own lines
    counts = json.JSONDecoder().raw_decode(proc.stdout[proc.stdout.index("{"):])[0]
    result = {"images": args.images, "mode": args.mode, "wall_s": round(wall, 2), "index": counts, "roles": {}}
    for name, threads in roles.items():
        total = Counter()
        for counter in threads.values():
            total.update(counter)
        per_thread = sum(total.values()) / len(threads)  # samples of one thread's wall time
        result["roles"][name] = {"threads": len(threads),
                                 "share": {a: round(n / len(threads) / per_thread, 3) for a, n in total.most_common()}}
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"manage.py index: {args.images} photos 1024x768 JPEG, ViT-B-32 {args.mode}, {os.cpu_count()} cores, "
          f"{wall:.1f} s under py-spy at {args.rate} Hz")
    print(f"{'thread':<20}{'activity':<64}{'share of its wall time':>24}")
    for name in ("main thread", "decode threads", "model thread"):
        info = result["roles"].get(name)
        if not info:
            continue
        shown = list(info["share"].items())[:args.top]
        rest = sum(v for _, v in list(info["share"].items())[args.top:])
        label = f"{name} ({info['threads']})" if info["threads"] > 1 else name
        for i, (act, share) in enumerate(shown + ([("everything else", rest)] if rest > 0 else [])):
            print(f"{label if i == 0 else '':<20}{act[:63]:<64}{share:>23.1%}")


if __name__ == "__main__":
    main()
