"""fp32 runtimes and their settings on the image tower, against bare torch, in one process, timed in turn.

The numbers behind "fp32 on AVX2: what was tried" in the README. ViT-B-32 with random weights
(the speed does not depend on them), exported once to ONNX by labeler (``--encoders`` keeps the
export); then torch (bare open_clip), ONNX Runtime and OpenVINO in the settings below each embed
one batch of 32, in turn, ``--rounds`` times, so a busy machine slows them alike. OpenVINO's bf16 row
is not fp32 (what bf16 products give where the CPU has them; tried and dropped, see the README), and
``--int8`` adds the int8 recipe this CPU kind chose, for comparison. Prints each one's
median wall-clock img/s and CPU seconds per image (process CPU time: less sensitive to other
load), both as ratios to torch's in the same rounds, and each one's min cosine to torch.

    .venv/bin/python bench/bench_fp32_runtimes.py [--rounds 4] [--encoders DIR] [--int8]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # torch's idle threads must not spin while the others run
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout's labeler, not an installed one
BATCH = 32


def ort_system(path: Path, threads: int, spin: bool = True, arena: bool = True, level: str = "ALL"):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, f"ORT_ENABLE_{level}")
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.log_severity_level = 3
    options.enable_cpu_mem_arena = arena
    if not spin:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return lambda x: session.run(None, {"pixels": x})[0]


def openvino_system(path: Path, threads: int, hint: str, static: int | None = None, precision: str = "f32"):
    import numpy as np
    import openvino as ov

    core = ov.Core()
    model = core.read_model(str(path))
    if static:
        model.reshape({"pixels": [static, 3, 224, 224]})
    compiled = core.compile_model(model, "CPU", {"PERFORMANCE_HINT": hint, "INFERENCE_NUM_THREADS": threads,
                                                 "INFERENCE_PRECISION_HINT": precision})
    requests = int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
    if requests <= 1:
        request = compiled.create_infer_request()
        return lambda x: request.infer({"pixels": x})[compiled.output(0)].copy()
    queue, out = ov.AsyncInferQueue(compiled, requests), [None] * requests
    queue.set_callback(lambda req, i: out.__setitem__(i, req.get_output_tensor(0).data.copy()))

    def run(x):
        part = len(x) // requests
        for i in range(requests):
            queue.start_async({"pixels": x[i * part:(i + 1) * part]}, i)
        queue.wait_all()
        return np.concatenate(out)
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--encoders", type=Path, default=None, help="keep the ONNX export here")
    parser.add_argument("--int8", action="store_true", help="also time the int8 recipe this CPU kind chose")
    args = parser.parse_args()
    import numpy as np
    import open_clip
    import torch

    from labeler.encoding.cpu import detect
    from labeler.encoding.encoder import load_encoder

    threads = os.cpu_count() or 1
    here = detect()
    print(f"CPU {here.model} ({here.key}); vector flags: {' '.join(sorted(here.flags))}; {threads} threads; "
          f"load average at start {os.getloadavg()[0]:.2f}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench_fp32.") as tmp:
        weights = Path(tmp) / "vit-b-32-random.pt"
        torch.manual_seed(0)
        torch.save(open_clip.create_model("ViT-B-32").state_dict(), weights)
        encoder = load_encoder(f"ViT-B-32:{weights}", "cpu", "fp32", args.encoders or Path(tmp) / "encoders",
                               runtime="onnxruntime")
        image = encoder.folder / "image.onnx"
        torch.set_num_threads(threads)
        model = open_clip.create_model("ViT-B-32", pretrained=str(weights)).eval()

        def bare(x):
            with torch.inference_mode():
                return model.encode_image(torch.from_numpy(x)).numpy()

        systems = {"torch (bare open_clip)": bare,
                   "onnxruntime ALL (labeler's)": ort_system(image, threads),
                   "onnxruntime no spinning": ort_system(image, threads, spin=False),
                   "onnxruntime no memory arena": ort_system(image, threads, arena=False),
                   "onnxruntime EXTENDED": ort_system(image, threads, level="EXTENDED")}
        try:
            import openvino  # noqa: F401
        except ImportError:
            print("OpenVINO is not installed: its rows are left out", flush=True)
        else:
            systems.update({"openvino LATENCY (labeler's)": openvino_system(image, threads, "LATENCY"),
                            "openvino bf16 LATENCY (not fp32)": openvino_system(image, threads, "LATENCY",
                                                                                 precision="bf16"),
                            "openvino THROUGHPUT": openvino_system(image, threads, "THROUGHPUT"),
                            "openvino THROUGHPUT static 16": openvino_system(image, threads, "THROUGHPUT", 16),
                            "openvino LATENCY static 32": openvino_system(image, threads, "LATENCY", 32)})
        if args.int8:  # not fp32: the int8 recipe this CPU kind chose, for the speed it trades fidelity for
            int8 = load_encoder(f"ViT-B-32:{weights}", "cpu", "int8", args.encoders or Path(tmp) / "encoders")
            systems[f"onnxruntime int8 {int8.recipe}"] = ort_system(int8.folder / f"image.int8-{int8.recipe}.onnx",
                                                                    threads)
        pixels = np.random.default_rng(0).normal(size=(BATCH, 3, 224, 224)).astype(np.float32)
        ref = bare(pixels)
        ref /= np.linalg.norm(ref, axis=1, keepdims=True)
        cosine = {}
        for name, run in systems.items():  # also the warm-up
            got = run(pixels)
            cosine[name] = float(((got / np.linalg.norm(got, axis=1, keepdims=True)) * ref).sum(1).min())
        wall = {name: [] for name in systems}
        cpu = {name: [] for name in systems}
        for _ in range(args.rounds):
            for name, run in systems.items():
                c0, t0 = time.process_time(), time.perf_counter()
                run(pixels)
                wall[name].append(time.perf_counter() - t0)
                cpu[name].append(time.process_time() - c0)
        print(f"load average at end {os.getloadavg()[0]:.2f}; batch {BATCH}, median of {args.rounds} rounds")
        base_wall, base_cpu = np.median(wall["torch (bare open_clip)"]), np.median(cpu["torch (bare open_clip)"])
        print(f"{'system':<36}{'img/s':>8}{'wall vs torch':>15}{'CPU s/img':>11}{'CPU vs torch':>14}{'min cosine':>12}")
        for name in systems:
            w, c = np.median(wall[name]), np.median(cpu[name])
            print(f"{name:<36}{BATCH / w:>8.2f}{base_wall / w:>15.2f}{c / BATCH:>11.4f}{base_cpu / c:>14.2f}"
                  f"{cosine[name]:>12.7f}")


if __name__ == "__main__":
    main()
