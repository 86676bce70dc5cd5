#!/usr/bin/env python
"""Search at scale: CLI wall time and in-process latency and recall on a synthetic collection.

HOME is a collection of N images made by ``bench_scale.build`` (built here when it holds fewer).
The first search opens the index (replaying the catalog, switching to IVF past the threshold, once,
and saving it); then:

* ``manage.py search TEXT`` wall time, process start included: a cached text (median of
  ``--cli-runs``), and new texts (each run a text never searched before, so it is encoded),
  against ``python -c pass`` and against importing the CLI, in the same run;
* in process: p50 of 20 text queries (prompts of the workshop set) through the index, against
  the same queries with ``--exact`` (a full scan), and recall@10 of the first against the second.

    PYTHONPATH=. .venv/bin/python bench/bench_search_scale.py HOME --images 1000000 [--model tiny|vit-b-32]
        [--cli-runs 5] [--json]

``--model vit-b-32``: ViT-B-32 with random weights and 512-d vectors (Gaussian clusters), the
dimension the issue's targets are for; ``tiny`` (the default) is labeler-tiny at dim 128.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_scale import MODELS, build, collection_of, model_spec  # noqa: E402
from labeler import search  # noqa: E402
from labeler.core.prompts import load_prompt_set  # noqa: E402
from labeler.collection import in_session  # noqa: E402

QUERY = "metal hammer with wooden handle"
QUERIES = 20
K = 10


def wall(argv: list[str], env: dict) -> float:
    began = time.perf_counter()
    subprocess.run(argv, cwd=ROOT, env=env, check=True, capture_output=True)
    return time.perf_counter() - began


def cli(home: Path, runs: int, model: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    manage = [sys.executable, str(ROOT / "manage.py"), "--home", str(home), "--model", model_spec(home, model)]
    search_argv = [*manage, "search", QUERY, "-k", str(K), "--json"]
    wall(search_argv, env)  # opens (and saves) the index, and caches the text, once
    stamp = int(time.time())
    cached = [wall(search_argv, env) for _ in range(runs)]
    new = [wall([*manage, "search", f"a photo of tool number {stamp}-{i}", "-k", str(K), "--json"], env)
           for i in range(runs)]
    bare = [wall([sys.executable, "-c", "pass"], env) for _ in range(runs)]
    imports = [wall([sys.executable, "-c", "import labeler.cli"], env) for _ in range(runs)]
    return {"cached_s": round(statistics.median(cached), 3), "new_text_s": round(statistics.median(new), 3),
            "python_pass_s": round(statistics.median(bare), 3), "import_cli_s": round(statistics.median(imports), 3)}


def in_process(home: Path, model: str) -> dict:
    collection = collection_of(home, model)
    index = in_session(collection.index_keeper.get)
    texts = [p.text for g in load_prompt_set("workshop").groups.values() for o in g.options for p in o.prompts]
    texts = texts[:: max(1, len(texts) // QUERIES)][:QUERIES]
    vectors = [search.query_vector(collection, t) for t in texts]  # encoded and cached before timing

    def timed(exact: bool) -> tuple[list[float], list[list[int]]]:
        times, found = [], []
        for vec in vectors:
            began = time.perf_counter()
            hits = search.nearest(collection, vec, K, exact=exact)
            times.append(time.perf_counter() - began)
            found.append([h.image_id for h in hits])
        return times, found

    timed(False)  # warm
    approx_t, approx = timed(False)
    exact_t, exact = timed(True)
    recall = float(np.mean([len(set(a) & set(e)) / len(e) for a, e in zip(approx, exact)]))
    return {"index": index.kind, "factory": index.factory, "nprobe": getattr(index, "nprobe", None),
            "vectors": len(index), "queries": len(vectors),
            "p50_ms": round(1000 * statistics.median(approx_t), 2),
            "exact_p50_ms": round(1000 * statistics.median(exact_t), 2), "recall_at_10": round(recall, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("home", type=Path)
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--cli-runs", type=int, default=5)
    parser.add_argument("--model", choices=MODELS, default="tiny",
                        help="labeler-tiny (dim 128) or ViT-B-32 with random weights (dim 512) [default: tiny]")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    home = args.home.resolve()
    built = build(home, args.images, model=args.model)
    result = {"images": args.images, "model": args.model, "dim": built["dim"], "build": built,
              "cli": cli(home, args.cli_runs, args.model), "in_process": in_process(home, args.model)}
    if args.json:
        print(json.dumps(result, indent=2))
        return
    c, p = result["cli"], result["in_process"]
    print(f"search at {args.images:,} images of dim {result['dim']} ({p['factory']}, nprobe {p['nprobe']}, "
          f"{p['vectors']:,} vectors; building took {built['seconds']} s, {built['added']:,} added)")
    print(f"  CLI wall, median of {args.cli_runs}: cached text {c['cached_s']} s, new text {c['new_text_s']} s; "
          f"python -c pass {c['python_pass_s']} s, import labeler.cli {c['import_cli_s']} s "
          f"(cached search = {c['cached_s'] / c['python_pass_s']:.0f}x a bare interpreter)")
    print(f"  in process, {p['queries']} text queries: p50 {p['p50_ms']} ms vs exact scan {p['exact_p50_ms']} ms "
          f"({p['exact_p50_ms'] / max(p['p50_ms'], 1e-9):.0f}x faster), recall@10 {p['recall_at_10']}")


if __name__ == "__main__":
    main()
