#!/usr/bin/env python
"""Train the bundled demo model ``labeler-tiny`` from scratch on the workshop world.

No pretrained weights are available offline, so this trains a small open_clip CLIP
(ModifiedResNet image tower at 64 px, 3-layer text transformer) contrastively on captions built
from the world's truth, then writes fp16 safetensors plus ``open_clip_config.json``
so that ``open_clip.create_model_and_transforms("local-dir:<out>")`` loads it.

    .venv/bin/python scripts/train_demo_model.py   # ~21 min on 2 otherwise idle CPU cores

It then evaluates the written model zero-shot on a fresh world (``--eval-seed``) with the
prompt ensembles of ``prompt_sets/workshop.yaml`` and prints per-group accuracy.

The loss is multi-positive: caption j is a positive for image i whenever image i
satisfies every attribute caption j asserts ("something red" fits all red images),
so attribute-only captions are not punished as false negatives. Lessons from the
earlier failed fine-tuning: fp32 throughout, gradient clipping, a clamped logit
scale, and a hard stop (exit 2) on a non-finite loss. Linear attribute heads on the
image embedding add direct supervision so ~1.5k CPU steps suffice; they are not saved.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import sys
import tempfile
import time
from pathlib import Path

# On a shared 2-core box, spinning OpenMP threads waste the few cycles we get.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import open_clip  # noqa: E402
from labeler.core import scoring
from labeler import demo_world as world  # noqa: E402
from labeler.core.prompts import Group, load_prompt_set  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "labeler" / "models" / "labeler-tiny"
DEFAULT_PROMPTS = ROOT / "prompt_sets" / "workshop.yaml"
IMAGE_SIZE = 64
MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)
# 49408-token vocabulary x width 128 is most of the size: ~8.7 M params, ~17.3 MB in fp16.
OPEN_CLIP_CONFIG = {
    "model_cfg": {
        "embed_dim": 128,
        "vision_cfg": {"image_size": IMAGE_SIZE, "layers": [2, 2, 2, 2], "width": 16},
        "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 128, "heads": 2, "layers": 3},
    },
    "preprocess_cfg": {
        "size": IMAGE_SIZE, "mean": list(MEAN), "std": list(STD),
        "interpolation": "bicubic", "resize_mode": "shortest",
    },
}
GROUPS = ("concept", "color", "material", "handle", "size", "context")
HAMMER_QUERY = "metal hammer with wooden handle"


class NonFiniteLoss(RuntimeError):
    """Training diverged; raised instead of writing a broken model."""


# ---------------------------------------------------------------- data

_PREPROCESS = None


def _init_worker(preprocess) -> None:
    global _PREPROCESS
    _PREPROCESS = preprocess
    torch.set_num_threads(1)


def _pixels(image) -> np.ndarray:
    """Apply the model's resize/crop (not ToTensor/Normalize): [64, 64, 3] uint8."""
    for t in _PREPROCESS.transforms:
        if "ToTensor" in type(t).__name__ or type(t).__name__ == "Normalize":
            break
        image = t(image)
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


def _render_chunk(args: tuple[int, int, int]) -> tuple[np.ndarray, list[dict[str, str]]]:
    """Render images [start, stop) of world ``seed`` as the model sees them (JPEGs round-tripped)."""
    import io

    from PIL import Image

    seed, start, stop = args
    pix, rows = [], []
    for i in range(start, stop):
        image, row, fmt = world.render(seed, i)
        if fmt == "jpg":
            image = Image.open(io.BytesIO(world.encode(image, fmt))).convert("RGB")
        pix.append(_pixels(image))
        rows.append(row)
    return np.stack(pix), rows


def build_pool(seed: int, count: int, preprocess, workers: int) -> tuple[np.ndarray, list[dict[str, str]]]:
    """Training images [count, 64, 64, 3] uint8 and their truth rows (cached in the temp folder)."""
    import hashlib

    key = hashlib.sha256(Path(world.__file__).read_bytes() + f"{seed}/{count}/{IMAGE_SIZE}".encode()).hexdigest()[:16]
    cache = Path(tempfile.gettempdir()) / f"labeler-tiny-pool-{key}.npz"
    if cache.exists():
        data = np.load(cache)
        return data["pix"], json.loads(str(data["rows"]))
    pix, rows = _render_pool(seed, count, preprocess, workers)
    np.savez(cache, pix=pix, rows=json.dumps(rows))
    return pix, rows


def _render_pool(seed: int, count: int, preprocess, workers: int) -> tuple[np.ndarray, list[dict[str, str]]]:
    chunks = [(seed, s, min(count, s + 500)) for s in range(0, count, 500)]
    ctx = mp.get_context("fork")
    with ctx.Pool(workers, initializer=_init_worker, initargs=(preprocess,)) as pool:
        parts = pool.map(_render_chunk, chunks)
    return np.concatenate([p for p, _ in parts]), [r for _, rows in parts for r in rows]


def _to_tensor(pix: np.ndarray) -> torch.Tensor:
    """[B, 64, 64, 3] uint8 -> normalised [B, 3, 64, 64] float32."""
    x = torch.from_numpy(pix).permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    return (x - mean) / std


def _strip_articles(text: str, rng: np.random.Generator) -> str:
    """Search queries often drop articles ('metal hammer with wooden handle')."""
    return " ".join(w for w in text.split() if w not in ("a", "an")) if rng.random() < 0.2 else text


def batch_captions(rows: list[dict[str, str]], rng: np.random.Generator) -> tuple[list[str], torch.Tensor]:
    """One random caption form per image, and targets [B, B]: image i satisfies caption j."""
    texts, specs = [], []
    for row in rows:
        options = world.caption_specs(row, rng)
        text, spec = options[rng.integers(len(options))]
        texts.append(_strip_articles(text, rng))
        specs.append(spec)
    match = torch.tensor([[all(row[k] == v for k, v in spec.items()) for spec in specs] for row in rows],
                         dtype=torch.float32)
    return texts, match


def multi_positive_loss(img: torch.Tensor, txt: torch.Tensor, match: torch.Tensor,
                        logit_scale: torch.Tensor) -> torch.Tensor:
    """Symmetric soft-target CLIP loss. img, txt: [B, D] normalised; match: [B, B] (image, caption)."""
    logits = logit_scale * img @ txt.T
    to_txt = match / match.sum(1, keepdim=True)
    to_img = (match / match.sum(0, keepdim=True)).T
    loss_i = -(to_txt * F.log_softmax(logits, dim=1)).sum(1).mean()
    loss_t = -(to_img * F.log_softmax(logits.T, dim=1)).sum(1).mean()
    return (loss_i + loss_t) / 2


# ---------------------------------------------------------------- evaluation

def load_prompt_groups(path: Path) -> dict[str, Group]:
    """workshop.yaml through labeler's loader: set-level and group templates expanded as labeling does."""
    return load_prompt_set(path).groups


@torch.no_grad()
def encode_texts(model, tokenizer, texts: list[str]) -> torch.Tensor:
    """[N, D] L2-normalised text embeddings."""
    return F.normalize(model.encode_text(tokenizer(texts)).float(), dim=-1)


@torch.no_grad()
def class_vectors(model, tokenizer, group: Group) -> torch.Tensor:
    """[n_options, D]: each option's weighted ensemble vector, labeler's ``scoring.mean_embeddings``."""
    texts = [p.text for o in group.options for p in o.prompts]
    owner = np.array([i for i, o in enumerate(group.options) for _ in o.prompts], np.int64)
    weights = np.array([p.weight for o in group.options for p in o.prompts], np.float32)
    emb = encode_texts(model, tokenizer, texts).numpy()
    return torch.from_numpy(scoring.mean_embeddings(emb, owner, len(group.options), weights))


@torch.no_grad()
def encode_world(model, preprocess, folder: Path, rows: list[dict[str, str]]) -> torch.Tensor:
    """[N, D] normalised image embeddings of a generated world folder."""
    from PIL import Image

    feats = []
    for s in range(0, len(rows), 250):
        x = torch.stack([preprocess(Image.open(folder / r["file"]).convert("RGB")) for r in rows[s:s + 250]])
        feats.append(F.normalize(model.encode_image(x).float(), dim=-1))
    return torch.cat(feats)


def evaluate(model, preprocess, tokenizer, prompts_path: Path, seed: int, count: int) -> dict:
    """Zero-shot accuracy per group (ensemble and baseline) and the hammer top-10 on a fresh world."""
    model.eval()
    groups = load_prompt_groups(prompts_path)
    with tempfile.TemporaryDirectory() as tmp:
        truth = world.generate_world(Path(tmp), count, seed)
        rows = world.read_truth(truth)
        img = encode_world(model, preprocess, Path(tmp), rows)
    result = {"seed": seed, "count": count, "ensemble": {}, "baseline": {}}
    for gname, group in groups.items():
        names = group.option_names
        truth_idx = torch.tensor([names.index(r[gname]) for r in rows])
        ens = class_vectors(model, tokenizer, group)
        result["ensemble"][gname] = float(((img @ ens.T).argmax(1) == truth_idx).float().mean()) * 100
        if group.baseline:
            base = encode_texts(model, tokenizer, [group.baseline_prompt(o) for o in group.options])
            result["baseline"][gname] = float(((img @ base.T).argmax(1) == truth_idx).float().mean()) * 100
    q = encode_texts(model, tokenizer, [HAMMER_QUERY])[0]
    top = (img @ q).topk(10).indices.tolist()
    result["hammer_top10"] = sum(
        rows[i]["concept"] == "hammer" and rows[i]["material"] == "metal" and rows[i]["handle"] == "wooden"
        for i in top)
    return result


def print_eval(result: dict) -> None:
    print(f"eval seed={result['seed']} count={result['count']}")
    for g in result["ensemble"]:
        print(f"  {g:9s} ensemble {result['ensemble'][g]:5.1f}%   baseline {result['baseline'].get(g, float('nan')):5.1f}%")
    print(f"  '{HAMMER_QUERY}': {result['hammer_top10']}/10 exact in top 10", flush=True)


# ---------------------------------------------------------------- training

def write_config(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "open_clip_config.json").write_text(json.dumps(OPEN_CLIP_CONFIG, indent=2) + "\n", encoding="utf-8")


def save_model(model: torch.nn.Module, out: Path) -> Path:
    """Write fp16 safetensors + config into ``out``; return the weights path."""
    from safetensors.torch import save_file

    write_config(out)
    state = {k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()}
    path = out / "open_clip_model.safetensors"
    save_file(state, str(path), metadata={"format": "pt", "model": "labeler-tiny"})
    return path


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim < 2 or "embedding" in name or "logit_scale" in name else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def train(args: argparse.Namespace) -> torch.nn.Module:
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        write_config(Path(tmp))  # build through open_clip's own loader, no weights yet
        model, _, preprocess = open_clip.create_model_and_transforms("local-dir:" + tmp)
        tokenizer = open_clip.get_tokenizer("local-dir:" + tmp)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {n_params / 1e6:.2f} M params ({n_params * 2 / 1e6:.1f} MB fp16)", flush=True)

    t0 = time.time()
    pix, rows = build_pool(args.seed, args.pool, preprocess, args.workers)
    print(f"pool: {len(rows)} images in {time.time() - t0:.0f}s", flush=True)

    # Auxiliary attribute heads on the image embedding: a from-scratch CLIP on 2 cores gets
    # only ~1k steps, and direct supervision gets the image tower past its slow start.
    # They are dropped before saving; the saved model is a plain open_clip CLIP.
    vocab = {"concept": world.CONCEPTS, "color": world.COLORS, "material": world.MATERIALS,
             "handle": world.HANDLES, "size": world.SIZES, "context": world.CONTEXTS}
    embed_dim = OPEN_CLIP_CONFIG["model_cfg"]["embed_dim"]
    heads = torch.nn.ModuleDict({g: torch.nn.Linear(embed_dim, len(v)) for g, v in vocab.items()})
    labels = {g: torch.tensor([v.index(r[g]) for r in rows]) for g, v in vocab.items()}
    params = _param_groups(model, args.weight_decay) + [{"params": list(heads.parameters()), "weight_decay": 0.0}]
    opt = torch.optim.AdamW(params, lr=args.lr, betas=(0.9, 0.98), eps=1e-6)
    warmup = max(1, args.steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warmup if s < warmup else 0.5 * (1 + math.cos(math.pi * (s - warmup) / max(1, args.steps - warmup))))
    token_cache: dict[str, torch.Tensor] = {}
    max_log_scale = math.log(100.0)
    model.train()
    t_start = time.time()
    for step in range(args.steps):
        idx = rng.choice(len(rows), args.batch, replace=False)
        batch = pix[idx]
        flip = rng.random(args.batch) < 0.5  # no attribute depends on left/right
        batch[flip] = batch[flip, :, ::-1]
        texts, match = batch_captions([rows[i] for i in idx], rng)
        for t in set(texts) - token_cache.keys():
            token_cache[t] = tokenizer([t])[0]
        tokens = torch.stack([token_cache[t] for t in texts])

        raw = model.encode_image(_to_tensor(batch))
        img = F.normalize(raw, dim=-1)
        txt = F.normalize(model.encode_text(tokens), dim=-1)
        clip_loss = multi_positive_loss(img, txt, match, model.logit_scale.exp())
        idx_t = torch.from_numpy(idx)
        aux_logits = {g: head(raw) for g, head in heads.items()}
        aux = sum(F.cross_entropy(aux_logits[g], labels[g][idx_t]) for g in heads) / len(heads)
        loss = clip_loss + args.aux_weight * aux
        if not torch.isfinite(loss):
            raise NonFiniteLoss(f"loss became {loss.item()} at step {step}; lower --lr and retry")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for g in params for p in g["params"]], args.clip)
        opt.step()
        sched.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, max_log_scale)
        if args.checkpoint and (step + 1) % 200 == 0:  # a usable model if the run is cut short
            save_model(model, args.checkpoint)
        if step % args.log_every == 0 or step == args.steps - 1:
            el = time.time() - t_start
            acc = " ".join(f"{g[:4]} {(aux_logits[g].argmax(1) == labels[g][idx_t]).float().mean().item():.2f}"
                           for g in heads)
            print(f"step {step + 1}/{args.steps} clip {clip_loss.item():.3f} aux {aux.item():.3f} [{acc}] scale {model.logit_scale.exp().item():.1f} "
                  f"lr {sched.get_last_lr()[0]:.2e} {el:.0f}s eta {el / (step + 1) * (args.steps - step - 1):.0f}s",
                  flush=True)
    model.eval()
    return model


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--seed", type=int, default=0, help="training world and init seed")
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--pool", type=int, default=12000, help="distinct training images")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--weight-decay", type=float, default=0.05)
    ap.add_argument("--clip", type=float, default=1.0, help="gradient norm clip")
    ap.add_argument("--aux-weight", type=float, default=1.0, help="weight of the auxiliary attribute heads")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--checkpoint", type=Path, default=None, help="folder for a model snapshot every 200 steps")
    ap.add_argument("--workers", type=int, default=2, help="processes rendering the pool")
    ap.add_argument("--log-every", type=int, default=20)
    ap.add_argument("--prompts", type=Path, default=DEFAULT_PROMPTS)
    ap.add_argument("--eval-seed", type=int, default=1001, help="held-out world seed (never the training seed)")
    ap.add_argument("--eval-count", type=int, default=2000, help="0 skips the evaluation")
    args = ap.parse_args(argv)
    if args.eval_count and args.eval_seed == args.seed:
        ap.error("--eval-seed must differ from --seed")
    torch.set_num_threads(args.threads)
    t0 = time.time()
    try:
        model = train(args)
    except NonFiniteLoss as exc:
        print(f"error: training stopped: {exc}", file=sys.stderr)
        return 2
    path = save_model(model, args.out)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB) after {(time.time() - t0) / 60:.1f} min", flush=True)
    if args.eval_count:
        spec = "local-dir:" + str(args.out)  # evaluate what was written, fp16 round trip included
        loaded, _, preprocess = open_clip.create_model_and_transforms(spec)
        print_eval(evaluate(loaded, preprocess, open_clip.get_tokenizer(spec), args.prompts,
                            args.eval_seed, args.eval_count))
    print(f"total {(time.time() - t0) / 60:.1f} min", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
