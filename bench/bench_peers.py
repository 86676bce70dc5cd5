"""labeler against its peers (rclip, clip-retrieval) and the bare model, on the same photos, same run.

Every system embeds the same generated photo-like 1024x768 JPEGs with ViT-B-32 and random weights
(which does not change speed): labeler through its real CLI in its default mode, rclip with
local random-weight ONNX files laid out as its own download (it runs ViT-B-32-256, its only
model, so its ratio is to its own bare model), clip-retrieval's ``inference`` with a local
open_clip checkpoint. The peers are installed from PyPI into their own venvs under the cache
folder: clip-retrieval shares this interpreter's torch build, rclip (which needs no torch) gets
none, and a constraints file pins torch to this build; no second torch is ever pulled. A peer that cannot
be installed or given local weights is reported in one line and the others go on.

Each run is timed from process launch: end-to-end img/s, start-up (launch to the first model
call), steady img/s (from the end of the first model call to the end of the last), and steady
over the bare model's img/s (``open_clip`` forward on its own preprocess, batch 32).

    .venv/bin/python bench/bench_peers.py [--count 300] [--cache ~/.cache/labeler-bench] [--only labeler,rclip]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_decode import make_photos  # noqa: E402

TORCH_PINS = ["torch==2.14.1", "torchvision==0.29.1"]
RCLIP_SUBDIR = "ViT-B-32-256-datacomp_s34b_b86k"  # rclip's model_download.MODEL_SUBDIR
BATCH = 32

# Run inside each system's own interpreter: wrap its model call to log (start, end, images)
# per batch, then run the system's own entry point as its console script would.
PROBE = textwrap.dedent('''
    import importlib, json, runpy, sys, time
    log, target, kind, entry, *argv = sys.argv[1:]
    module, _, attr = target.partition(":")
    owner = importlib.import_module(module)
    *path, name = attr.split(".")
    for part in path:
        owner = getattr(owner, part)
    inner = getattr(owner, name)
    out = open(log, "a")
    def timed(*args, **kwargs):
        start = time.time()
        result = inner(*args, **kwargs)
        n = len(result["image_embs"]) if isinstance(result, dict) else len(result)  # clip-retrieval: a dict
        out.write(json.dumps([start, time.time(), n]) + "\\n"); out.flush()
        return result
    setattr(owner, name, timed)
    sys.argv = [entry, *argv]
    if kind == "path":
        runpy.run_path(entry, run_name="__main__")
    else:
        runpy.run_module(entry, run_name="__main__", alter_sys=True)
''')

BARE_TORCH = textwrap.dedent('''
    import sys, time, json, torch, open_clip
    from PIL import Image
    weights, *paths = sys.argv[1:]
    torch.set_num_threads(__import__("os").cpu_count())
    model, _, preprocess = open_clip.create_model_and_transforms("ViT-B-32", pretrained=weights)
    model.eval()
    t0 = time.time()
    with torch.inference_mode():
        for i in range(0, len(paths), 32):
            batch = torch.stack([preprocess(Image.open(p).convert("RGB")) for p in paths[i:i + 32]])
            model.encode_image(batch)
    print(json.dumps(len(paths) / (time.time() - t0)))
''')

BARE_RCLIP = textwrap.dedent('''
    import sys, time, json, numpy as np
    from rclip.model_download import load_visual_query_session
    from rclip.utils.helpers import read_image
    from rclip.utils.preprocess import preprocess
    paths = sys.argv[1:]
    session = load_visual_query_session()
    t0 = time.time()
    for i in range(0, len(paths), 32):
        session.run(None, {"input": np.stack([preprocess(read_image(p)) for p in paths[i:i + 32]])})
    print(json.dumps(len(paths) / (time.time() - t0)))
''')


@dataclass
class Result:
    system: str
    images: int = 0
    wall: float = 0.0
    startup: float | None = None
    steady: float | None = None
    bare: float | None = None  # the bare model's img/s this system is compared with
    note: str = ""

    @property
    def end_to_end(self) -> float:
        return self.images / self.wall if self.wall else 0.0


def run(cmd: list[str], log: Path, **kwargs) -> subprocess.CompletedProcess:
    with open(log, "a") as out:
        out.write(f"$ {' '.join(map(str, cmd))}\n")
        out.flush()
        return subprocess.run(list(map(str, cmd)), stdout=out, stderr=subprocess.STDOUT, **kwargs)


def timed_run(name: str, python: Path, target: str, kind: str, entry: str, argv: list, cache: Path,
              images: int, **kwargs) -> Result:
    """Run ``entry`` under the probe; the result, or one line saying why it failed."""
    calls = cache / f"{name}.calls.jsonl"
    calls.unlink(missing_ok=True)
    started = time.time()
    done = run([python, cache / "probe.py", calls, target, kind, entry, *argv], cache / f"{name}.log", **kwargs)
    wall = time.time() - started
    if done.returncode != 0:
        return Result(name, note=f"failed (exit {done.returncode}): see {cache / f'{name}.log'}")
    batches = [json.loads(line) for line in calls.read_text().splitlines()] if calls.exists() else []
    result = Result(name, images, wall)
    if batches:
        result.startup = batches[0][0] - started
        if len(batches) > 1:
            result.steady = sum(b[2] for b in batches[1:]) / (batches[-1][1] - batches[0][1])
    if sum(b[2] for b in batches) != images:
        result.note = f"embedded {sum(b[2] for b in batches)} of {images}"
    return result


def peer_venv(cache: Path, name: str, package: str, log: Path, extra: tuple[str, ...] = (),
              torch: bool = True) -> Path | str:
    """A venv with ``package``, sharing this interpreter's torch; its python, or why not.

    ``torch=False`` (rclip: ONNX Runtime, no torch among its requirements): no torch is linked in,
    and a constraints file pins torch to this build, so that nothing it pulls can install another."""
    venv = cache / name
    python = venv / "bin" / "python"
    if python.exists() and run([python, "-c", f"import importlib.metadata as m; m.version('{package}')"],
                               log).returncode == 0 and not extra:
        return python
    if not torch:
        if not python.exists() and run(["python3", "-m", "venv", venv], log).returncode != 0:
            return "cannot create a venv (python3 -m venv)"
        constraints = cache / "torch-constraints.txt"
        constraints.write_text("\n".join(TORCH_PINS) + "\n")
        if run([venv / "bin" / "pip", "install", "-q", "-c", constraints, package, *extra], log).returncode != 0:
            return f"pip install {package} failed (offline, or no build for this Python): see {log}"
        return python
    shared = cache / "torch-site"  # links to this torch build and its CUDA wheels: never a second copy
    site = Path(sysconfig.get_paths()["purelib"])
    shared.mkdir(parents=True, exist_ok=True)
    for entry in site.iterdir():
        if entry.name.split("-")[0].split("_")[0].lower() in {"torch", "torchvision", "torchgen", "nvidia",
                                                                "triton", "cuda"}:
            link = shared / entry.name
            if not link.exists():
                link.symlink_to(entry)
    if not python.exists() and run(["python3", "-m", "venv", venv], log).returncode != 0:
        return "cannot create a venv (python3 -m venv)"
    purelib = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True).stdout.strip()
    (Path(purelib) / "labeler_bench_torch.pth").write_text(f"{shared}\n")
    pip = [venv / "bin" / "pip", "install", "-q"]
    if run([*pip, *TORCH_PINS], log).returncode != 0 or run([*pip, package, *extra, *TORCH_PINS], log).returncode != 0:
        return f"pip install {package} failed (offline, or no build for this Python): see {log}"
    return python


def random_weights(cache: Path) -> Path:
    """ViT-B-32 random weights as an open_clip checkpoint (made once, seed 0)."""
    path = cache / "vit-b-32-random.pt"
    if not path.exists():
        import open_clip
        import torch

        torch.manual_seed(0)
        model = open_clip.create_model("ViT-B-32")
        torch.save(model.state_dict(), path)
    return path


def rclip_datadir(cache: Path) -> Path:
    """rclip's data folder with random-weight ViT-B-32-256 ONNX files where its download puts them."""
    datadir = cache / "rclip-data"
    folder = datadir / RCLIP_SUBDIR
    if not (folder / "textual.onnx").exists():
        import open_clip
        import torch

        torch.manual_seed(0)
        model = open_clip.create_model("ViT-B-32-256").eval()
        folder.mkdir(parents=True, exist_ok=True)

        class Tower(torch.nn.Module):
            def __init__(self, encode):
                super().__init__()
                self.model, self.encode = model, encode

            def forward(self, x):
                return getattr(self.model, self.encode)(x)

        for name, encode, example in [("visual.onnx", "encode_image", torch.zeros(2, 3, 256, 256)),
                                      ("textual.onnx", "encode_text", torch.zeros(2, 77, dtype=torch.int64))]:
            torch.onnx.export(Tower(encode), (example,), folder / name, input_names=["input"],
                              output_names=["output"], dynamic_axes={"input": {0: "n"}, "output": {0: "n"}},
                              dynamo=False, opset_version=17)
        vocab = Path(open_clip.__file__).parent / "bpe_simple_vocab_16e6.txt.gz"
        (datadir / "tokenizer").mkdir(exist_ok=True)
        shutil.copy(vocab, datadir / "tokenizer" / vocab.name)
    return datadir


def bare(python: Path, script: str, args: list, log: Path, **kwargs) -> float | None:
    done = subprocess.run([str(python), "-c", script, *map(str, args)], capture_output=True, text=True, **kwargs)
    with open(log, "a") as out:
        out.write(done.stdout + done.stderr)
    return float(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 else None


def bench_labeler(cache: Path, photos: Path, count: int, weights: Path, bare_fp32: float | None) -> Result:
    home = cache / "labeler-home"
    shutil.rmtree(home, ignore_errors=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = timed_run("labeler", Path(sys.executable), "labeler.ingest.pipeline:embed_batch", "path",
                       str(ROOT / "manage.py"),
                       ["--home", home, "--model", f"ViT-B-32:{weights}", "index", photos, "--json"],
                       cache, count, env=env)
    result.bare = bare_fp32
    return result


def bench_rclip(cache: Path, photos: Path, count: int) -> Result:
    python = peer_venv(cache, "rclip", "rclip", cache / "rclip-install.log", torch=False)
    if isinstance(python, str):
        return Result("rclip", note=python)
    try:
        datadir = rclip_datadir(cache)
    except Exception as exc:
        return Result("rclip", note=f"cannot make its local ONNX model: {type(exc).__name__}: {exc}")
    for stale in datadir.glob("db.sqlite3*"):
        stale.unlink()
    env = {**os.environ, "RCLIP_DATADIR": str(datadir), "HF_HUB_OFFLINE": "1"}
    paths = sorted(photos.glob("*.jpg"))
    own_bare = bare(python, BARE_RCLIP, paths, cache / "rclip.log", env=env)
    result = timed_run("rclip", python, "rclip.model:Model.compute_preprocessed_image_features", "module",
                       "rclip.main", ["-f", "-t", "1", "a photo"], cache, count, env=env, cwd=photos)
    result.bare = own_bare
    version = subprocess.run([str(python), "-c", "import importlib.metadata as m; print(m.version('rclip'))"],
                             capture_output=True, text=True).stdout.strip()
    result.system = f"rclip {version} (ONNX Runtime, ViT-B-32-256)"
    return result


def bench_clip_retrieval(cache: Path, photos: Path, count: int, weights: Path, bare_fp32: float | None) -> Result:
    # its `clip` dependency imports pkg_resources, which setuptools 81 removed
    python = peer_venv(cache, "clipret", "clip-retrieval", cache / "clipret-install.log", ("setuptools<81",))
    if isinstance(python, str):
        return Result("clip-retrieval", note=python)
    out = cache / "clipret-out"
    shutil.rmtree(out, ignore_errors=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = timed_run("clip-retrieval", python, "clip_retrieval.clip_inference.mapper:ClipMapper.__call__",
                       "module", "clip_retrieval.cli",
                       ["inference", "--input_dataset", photos, "--output_folder", out,
                        "--clip_model", f"open_clip:ViT-B-32/{weights}", "--batch_size", BATCH,
                        "--enable_text", "False", "--enable_metadata", "False"], cache, count, env=env)
    result.bare = bare_fp32
    version = subprocess.run([str(python), "-c", "import importlib.metadata as m; print(m.version('clip-retrieval'))"],
                             capture_output=True, text=True).stdout.strip()
    result.system = f"clip-retrieval {version}"
    return result


def fmt(value: float | None, digits: int = 1) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "labeler-bench")
    parser.add_argument("--only", default="labeler,rclip,clip-retrieval")
    args = parser.parse_args()
    cache = args.cache.expanduser()
    cache.mkdir(parents=True, exist_ok=True)
    (cache / "probe.py").write_text(PROBE)
    weights = random_weights(cache)
    only = set(args.only.split(","))
    with tempfile.TemporaryDirectory() as tmp:
        photos = Path(tmp) / "photos"
        photos.mkdir()
        make_photos(photos, args.count, (1024, 768))
        paths = sorted(photos.glob("*.jpg"))
        bare_fp32 = bare(Path(sys.executable), BARE_TORCH, [weights, *paths], cache / "bare.log")
        results = [Result("bare open_clip ViT-B-32, batch 32", args.count, args.count / bare_fp32, bare=bare_fp32,
                          steady=bare_fp32) if bare_fp32 else Result("bare open_clip", note="failed: see bare.log")]
        if "labeler" in only:
            results.append(bench_labeler(cache, photos, args.count, weights, bare_fp32))
        if "rclip" in only:
            results.append(bench_rclip(cache, photos, args.count))
        if "clip-retrieval" in only:
            results.append(bench_clip_retrieval(cache, photos, args.count, weights, bare_fp32))

    print(f"{args.count} photo-like 1024x768 JPEGs, ViT-B-32 random weights, {os.cpu_count()} cores, same run")
    print("| system | end-to-end img/s | start-up s | steady img/s | steady / bare model |")
    print("|---|---|---|---|---|")
    for r in results:
        if r.note and not r.wall:
            print(f"| {r.system} | {r.note} | | | |")
            continue
        ratio = fmt(r.steady / r.bare, 2) if r.steady and r.bare else ""
        own = " of its own bare model" if r.system.startswith("rclip") and ratio else ""
        note = f" ({r.note})" if r.note else ""
        print(f"| {r.system}{note} | {r.end_to_end:.1f} | {fmt(r.startup)} | {fmt(r.steady)} | {ratio}{own} |")
    labeler = next((r for r in results if r.system == "labeler" and r.wall), None)
    if labeler:
        for r in results:
            if r is not labeler and r.wall:
                print(f"labeler / {r.system.split(' (')[0]}: end-to-end {labeler.end_to_end / r.end_to_end:.2f}x"
                      + (f", steady {labeler.steady / r.steady:.2f}x" if labeler.steady and r.steady else ""))


if __name__ == "__main__":
    main()
