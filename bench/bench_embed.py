"""Embedding speed, start-up and memory of labeler's encoder modes against bare open_clip.

Names the CPU (model, kind, vector flags) and the load average, since the ratios change with both.
Generates photo-like 1024x768 JPEGs and (for ViT-B-32) random weights of the architecture,
exports the ONNX towers once (timed apart), then runs each system in its own fresh process:

* ``bare``: open_clip fp32, PIL decode + its transform, batch 32, one thread of Python;
* ``labeler-MODE``: ``index_paths`` on a fresh home, in encoder mode MODE (fp32, int8, torch);
  ``fp32:RUNTIME`` forces the fp32 runtime (onnxruntime, openvino), plain ``fp32`` runs the one
  chosen on this CPU kind (measured during the one-time export, and printed).

For each: end-to-end img/s, start-up (process start to the first batch embedded), steady img/s
(after the first batch), steady / bare, the model's forward img/s alone (batch 32 of prepared
inputs), peak RSS, and the lowest cosine of its vectors to bare fp32's on the same files.

    .venv/bin/python bench/bench_embed.py [--images 300] [--model vit-b-32 | labeler-tiny]
        [--modes fp32,int8,torch | fp32:onnxruntime,fp32:openvino,...]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout's labeler, not an installed one
BATCH = 32


def peak_rss_mb() -> float:
    """This process's peak resident memory. VmHWM, not ru_maxrss: Linux carries ru_maxrss over
    from the parent across exec, so a child would report the parent's peak."""
    from labeler.encoding.runtimes import resident_mb

    return resident_mb("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def forward_rate(encode, batch) -> float:
    """img/s of ``encode(batch)``, best of 3 after a warm-up."""
    encode(batch)
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        encode(batch)
        best = min(best, time.perf_counter() - start)
    return len(batch) / best


# -- the child runs ----------------------------------------------------------------------------
def run_bare(spec: str, photos: Path, out: Path, spawned: float) -> dict:
    import numpy as np
    import open_clip
    import torch
    from PIL import Image

    torch.set_num_threads(os.cpu_count() or 1)
    name, _, weights = spec.partition(":")
    if name == "labeler-tiny":
        from labeler.encoding.model_spec import TINY_DIR

        name, weights = f"local-dir:{TINY_DIR}", None
    model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=weights or None)
    model.eval()
    paths = sorted(photos.glob("*.jpg"))
    vectors, stamps = [], []
    with torch.inference_mode():
        for start in range(0, len(paths), BATCH):
            batch = torch.stack([preprocess(Image.open(p).convert("RGB")) for p in paths[start:start + BATCH]])
            vectors.append(model.encode_image(batch).float().numpy())
            stamps.append((time.time(), len(batch)))
        inputs = batch[:BATCH]
        rate = forward_rate(model.encode_image, inputs)
    vecs = np.concatenate(vectors)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    np.save(out / "vectors.npy", vecs)
    json.dump([p.name for p in paths], open(out / "names.json", "w"))
    return report(stamps, spawned, rate)


def run_labeler(spec: str, mode: str, photos: Path, out: Path, spawned: float, cache: Path) -> dict:
    import numpy as np
    from sqlalchemy import select

    from labeler.ingest import pipeline, run
    from labeler.store.catalog import ImageFile
    from labeler.collection import Collection, in_session
    from labeler.config import Config

    stamps: list[tuple[float, int]] = []
    embed = pipeline.embed_batch

    def timed(encoder, pixels):
        vecs = embed(encoder, pixels)
        stamps.append((time.time(), len(vecs)))
        return vecs

    pipeline.embed_batch = timed
    mode, _, runtime = mode.partition(":")
    collection = Collection(Config(home=out / "home", model=spec, encoder_mode=mode, encoder_cache=cache,
                                   encoder_runtime=runtime or None, batch_size=BATCH))
    run.index_paths(collection, [photos])
    encoder = in_session(collection.models.encoder)
    import PIL.Image

    first = encoder.preprocess(PIL.Image.open(next(photos.glob("*.jpg"))).convert("RGB"))
    rate = forward_rate(lambda b: encoder.encode_images(b), [first] * BATCH)
    ids, vecs = in_session(collection.vectors.read)
    with collection.session() as s:
        path_of = dict(s.execute(select(ImageFile.image_id, ImageFile.path)).all())
    names = [Path(path_of[int(i)]).name for i in ids]
    np.save(out / "vectors.npy", vecs)
    json.dump(names, open(out / "names.json", "w"))
    return report(stamps, spawned, rate)


def report(stamps: list[tuple[float, int]], spawned: float, forward: float) -> dict:
    total = sum(n for _, n in stamps)
    end, first_n = stamps[-1][0], stamps[0][1]
    steady = (total - first_n) / (end - stamps[0][0]) if len(stamps) > 1 else float("nan")
    return {"images": total, "end_to_end": total / (end - spawned), "startup": stamps[0][0] - spawned,
            "steady": steady, "forward": forward, "peak_rss_mb": peak_rss_mb()}


# -- the parent --------------------------------------------------------------------------------
def child(args: list[str]) -> dict:
    spawned = time.time()
    proc = subprocess.run([sys.executable, __file__, "--child", json.dumps([spawned, *args])],
                          capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    if proc.returncode:
        raise SystemExit(f"{args[0]} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def cosines(ref_dir: Path, run_dir: Path) -> float:
    import numpy as np

    ref = dict(zip(json.load(open(ref_dir / "names.json")), np.load(ref_dir / "vectors.npy")))
    got = dict(zip(json.load(open(run_dir / "names.json")), np.load(run_dir / "vectors.npy")))
    return float(min(np.dot(ref[n], v) for n, v in got.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--model", default="vit-b-32", help="vit-b-32 (random weights) or labeler-tiny")
    parser.add_argument("--modes", default="fp32,int8,torch")
    parser.add_argument("--encoders", type=Path, default=None,
                        help="keep the ONNX exports in this folder, so a rerun skips the one-time export")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        spawned, kind, *rest = json.loads(args.child)
        result = run_bare(rest[0], Path(rest[1]), Path(rest[2]), spawned) if kind == "bare" else run_labeler(
            rest[0], kind, Path(rest[1]), Path(rest[2]), spawned, Path(rest[3]))
        print(json.dumps(result))
        return

    with tempfile.TemporaryDirectory(prefix="bench_embed.") as tmp:
        tmp = Path(tmp)
        photos, cache = tmp / "photos", args.encoders or tmp / "encoders"
        from labeler.encoding.probe_images import write_photos

        write_photos(photos, args.images)
        if args.model == "vit-b-32":
            import open_clip
            import torch

            weights = tmp / "vit-b-32-random.pt"
            torch.manual_seed(0)
            torch.save(open_clip.create_model("ViT-B-32").state_dict(), weights)
            spec = f"ViT-B-32:{weights}"
        else:
            spec = args.model
        modes = [m for m in args.modes.split(",") if m]
        from labeler.encoding.cpu import detect
        from labeler.encoding.encoder import describe_backend, load_encoder
        from labeler.errors import ModelUnavailable

        here = detect()
        print(f"CPU {here.model} ({here.key}); vector flags: {' '.join(sorted(here.flags)) or 'none'}; "
              f"load average at start {os.getloadavg()[0]:.2f}")
        started, refused = time.perf_counter(), []
        for mode in modes:
            if mode != "torch":
                try:  # the one-time export (and int8's recipe check, fp32's runtime choice), timed apart
                    base, _, runtime = mode.partition(":")
                    load_encoder(spec, "cpu", base, cache, runtime=runtime or None)
                except ModelUnavailable as exc:
                    refused.append(mode)
                    print(f"{mode} refused here: {exc}")
        export_s = time.perf_counter() - started
        modes = [m for m in modes if m not in refused]
        print(f"model {args.model}, {args.images} photos 1024x768 JPEG, {os.cpu_count()} cores; "
              f"one-time ONNX export + int8 quantisation and check {export_s:.1f}s")
        if "int8" in modes or "int8" in refused:
            print(f"int8 back end here: {json.dumps(describe_backend(spec, 'int8', 'cpu', cache))}")
        if any(m.startswith("fp32") for m in modes):
            print(f"fp32 back end here: {json.dumps(describe_backend(spec, 'fp32', 'cpu', cache))}")
        rows = {}
        for kind in ["bare", *modes]:
            out = tmp / kind
            out.mkdir()
            extra = [spec, str(photos), str(out)] + ([] if kind == "bare" else [str(cache)])
            rows[kind] = child([kind, *extra])
            rows[kind]["cosine"] = cosines(tmp / "bare", out)
        bare = rows["bare"]
        print(f"load average at end {os.getloadavg()[0]:.2f}")
        names = {kind: "bare open_clip" if kind == "bare" else f"labeler {kind}" for kind in rows}
        width = max(16, *(len(name) + 1 for name in names.values()))
        print(f"{'system':<{width}}{'end-to-end img/s':>18}{'start-up s':>12}{'steady img/s':>14}{'steady/bare':>13}"
              f"{'forward img/s':>15}{'forward/bare':>14}{'peak RSS MB':>13}{'min cosine':>12}")
        for kind, r in rows.items():
            print(f"{names[kind]:<{width}}{r['end_to_end']:>18.1f}{r['startup']:>12.2f}{r['steady']:>14.1f}"
                  f"{r['steady'] / bare['steady']:>13.2f}{r['forward']:>15.1f}{r['forward'] / bare['forward']:>14.2f}"
                  f"{r['peak_rss_mb']:>13.0f}{r['cosine']:>12.5f}")


if __name__ == "__main__":
    main()
