"""int8 against fp32 on a demo world, per quantisation recipe, on this CPU: the numbers behind int8's default.

For each recipe of :mod:`labeler.encoding.int8` (whether or not this CPU kind would try it), the
lowest image cosine to fp32, the text cosine over the workshop prompts, and the label agreement:
the share of (image, group) pairs whose top-1 option of ``prompt_sets/workshop.yaml`` is the
same as fp32's, overall and per group. Also each tower's forward rate on one batch of 32.

    .venv/bin/python bench/bench_int8.py [--images 500] [--seed 21] [--model labeler-tiny | vit-b-32]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout's labeler, not an installed one


def agreement_per_group(ref, got, ref_texts, got_texts, prompt_set) -> dict[str, float]:
    from labeler.encoding.int8 import label_agreement

    out = {}
    for name, group in prompt_set.groups.items():
        one = dataclasses.replace(prompt_set, groups={name: group})
        out[name] = label_agreement(ref, got, ref_texts, got_texts, one)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--seed", type=int, default=21)
    parser.add_argument("--model", default="labeler-tiny", help="labeler-tiny or vit-b-32 (random weights)")
    args = parser.parse_args()

    from labeler.core.prompts import PROMPT_SET_DIR, load_prompt_set
    from labeler.encoding import cpu, int8
    from labeler.encoding.encoder import load_encoder
    from labeler.encoding.onnx_encoder import OnnxEncoder
    from labeler.encoding.probe_images import world_images

    here = cpu.detect()
    print(f"CPU {here.model} ({here.key}); vector flags: {' '.join(sorted(here.flags))}")
    with tempfile.TemporaryDirectory(prefix="bench_int8.") as tmp:
        spec = args.model
        if args.model == "vit-b-32":
            import open_clip
            import torch

            weights = Path(tmp) / "vit-b-32-random.pt"
            torch.manual_seed(0)
            torch.save(open_clip.create_model("ViT-B-32").state_dict(), weights)
            spec = f"ViT-B-32:{weights}"
        fp32 = load_encoder(spec, "cpu", "fp32", Path(tmp) / "encoders")
        images, _rows = world_images(args.images, seed=args.seed)
        pixels = np.stack([fp32.preprocess(i) for i in images])
        prompt_set = load_prompt_set(PROMPT_SET_DIR / "workshop.yaml")
        texts = list(dict.fromkeys(p.text for g in prompt_set.groups.values() for o in g.options for p in o.prompts))

        def run(encoder):
            vecs = np.concatenate([encoder.encode_images(pixels[i:i + 32]) for i in range(0, len(pixels), 32)])
            encoder.encode_images(pixels[:32])
            start = time.perf_counter()
            encoder.encode_images(pixels[:32])
            return vecs, encoder.encode_texts(texts), 32 / (time.perf_counter() - start)

        ref, ref_text, ref_rate = run(fp32)
        print(f"{spec}, demo world seed {args.seed}, {args.images} images, {len(texts)} prompts; "
              f"fp32 forward {ref_rate:.1f} img/s")
        for recipe in int8.RECIPES:
            int8.quantize(fp32.folder, recipe)
            got, got_text, rate = run(OnnxEncoder(spec, fp32.folder, fp32.meta, "int8", recipe))
            groups = agreement_per_group(ref, got, dict(zip(texts, ref_text)), dict(zip(texts, got_text)), prompt_set)
            overall = int8.label_agreement(ref, got, dict(zip(texts, ref_text)), dict(zip(texts, got_text)),
                                           prompt_set)
            print(json.dumps({"recipe": recipe, "min_cosine": round(float((ref * got).sum(1).min()), 5),
                              "text_min_cosine": round(float((ref_text * got_text).sum(1).min()), 5),
                              "label_agreement": round(overall, 4),
                              "per_group": {k: round(v, 4) for k, v in groups.items()},
                              "forward_img_s": round(rate, 1), "forward_vs_fp32": round(rate / ref_rate, 2)}))


if __name__ == "__main__":
    main()
