"""The torch-free text path: CLIP's tokenizer ported to numpy, and the ONNX text tower."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import open_clip
import pytest

from labeler.encoding.encoder import load_encoder
from labeler.encoding.model_spec import TINY_DIR
from labeler.encoding.tokenizer import ClipTokenizer

TRICKY = [
    "",
    "a photo of a hammer",
    "  A   PHOTO\tof a\nHAMMER  ",
    "metal hammer with wooden handle, 12\" long & heavy!!!",
    "it's a dog's life; they're here, we'll see, I'd go, you've got, I'm ok",
    "Ünïcödé café naïve façade — “quotes” and ‘apostrophes’ …",
    "mojibake: Ã©tÃ© and &amp;amp; html &lt;b&gt;",
    "emoji 🔨🪛🧰 and CJK 锤子 ハンマー 망치",
    "numbers 3.14159 1,000,000 2026-12-05 #42 @user",
    "under_score snake_case CamelCaseWords hyphen-ated",
    "<start_of_text> already special <end_of_text>",
    "word " * 100,  # longer than any context: cut, ending with the end-of-text id
    "x" * 500,
]


@pytest.mark.parametrize("clean", ["lower", "whitespace", "canonicalize"])
@pytest.mark.parametrize("context_length", [77, 32])
def test_tokens_equal_open_clip(clean, context_length):
    theirs = open_clip.tokenizer.SimpleTokenizer(context_length=context_length, clean=clean)(TRICKY).numpy()
    ours = ClipTokenizer(context_length, clean)(TRICKY)
    assert ours.dtype == np.int64 and ours.shape == (len(TRICKY), context_length)
    for text, a, b in zip(TRICKY, ours, theirs):
        assert a.tolist() == b.tolist(), text


def test_model_tokenizer_settings_are_recorded(onnx_cache):
    tiny = load_encoder("labeler-tiny", "cpu", "fp32", onnx_cache)
    assert tiny.meta["tokenizer"] == {"kind": "clip-bpe", "context_length": 32, "clean": "lower"}
    theirs = open_clip.get_tokenizer(f"local-dir:{TINY_DIR}")(TRICKY).numpy()
    assert tiny.tokenize(TRICKY).tolist() == theirs.tolist()


@pytest.mark.parametrize("mode, floor", [("fp32", 0.9999), ("int8", 0.99)])
def test_text_vectors_match_torch(onnx_cache, mode, floor):
    texts = TRICKY + ["a red screwdriver on a workbench", "a wrench"]
    ref = load_encoder("labeler-tiny", "cpu", "torch").encode_texts(texts)
    got = load_encoder("labeler-tiny", "cpu", mode, onnx_cache).encode_texts(texts)
    assert got.shape == ref.shape and got.dtype == np.float32
    assert np.allclose(np.linalg.norm(got, axis=1), 1, atol=1e-5)
    assert float((got * ref).sum(axis=1).min()) >= floor


def test_new_query_text_imports_no_torch(onnx_cache):
    """Once exported, a process that encodes a new text never imports torch or open_clip, nor
    loads the image tower."""
    code = (
        "import sys, json; from pathlib import Path; from labeler.encoding.encoder import load_encoder\n"
        f"e = load_encoder('labeler-tiny', None, 'fp32', Path({str(onnx_cache)!r}))\n"
        "v = e.encode_texts(['a hammer nobody asked for before'])\n"
        "print(json.dumps({'shape': list(v.shape), 'torch': 'torch' in sys.modules,"
        " 'open_clip': 'open_clip' in sys.modules, 'image_tower': e._image is not None}))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          cwd=str(TINY_DIR.parents[2]))
    # ... nor loads the image tower (most of a second for ViT-B-32)
    assert json.loads(done.stdout) == {"shape": [1, 128], "torch": False, "open_clip": False, "image_tower": False}


def test_long_made_up_words_give_open_clip_pieces_and_the_cache_stays_bounded():
    import random

    from labeler.encoding.tokenizer import BPE_CACHE_SIZE

    rng = random.Random(21)
    reference = open_clip.tokenizer.SimpleTokenizer()
    ours = ClipTokenizer()
    words = ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 300)))
             for alphabet in ("abcdefghijklmnopqrstuvwxyz", "ab", "aaab", "éàü日本😀x", "thinged ")
             for _ in range(30)]
    for word in words:  # the pieces of the whole word, past what a context keeps
        token = "".join(ours.byte_encoder[b] for b in word.encode("utf-8"))
        if token.strip():
            assert ours.bpe(token) == reference.bpe(token), word
    assert ours(words).tolist() == reference(words).numpy().tolist()

    for i in range(BPE_CACHE_SIZE + 500):  # a stream of made-up words: the cache stops growing
        ours.bpe(f"w{i}x")
    assert ours._cached_bpe.cache_info().currsize == BPE_CACHE_SIZE
