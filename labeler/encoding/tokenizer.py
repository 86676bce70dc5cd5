"""CLIP's byte-pair tokenizer without torch: the same vocabulary file and the same rules as
open_clip's ``SimpleTokenizer``, returning numpy ids, so a new query text never imports torch.

``tests/test_encoder_text.py`` checks that it gives exactly open_clip's ids on awkward strings.
"""

from __future__ import annotations

import gzip
import html
import importlib.util
import string
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np

SPECIALS = ("<start_of_text>", "<end_of_text>")
CLEANS = ("lower", "whitespace", "canonicalize")


def default_vocab() -> Path:
    """open_clip's ``bpe_simple_vocab_16e6.txt.gz``, found without importing open_clip (which imports torch)."""
    found = importlib.util.find_spec("open_clip")
    if found is None or not found.submodule_search_locations:
        raise FileNotFoundError("open_clip is not installed; its BPE vocabulary file is needed")
    return Path(list(found.submodule_search_locations)[0]) / "bpe_simple_vocab_16e6.txt.gz"


@lru_cache()
def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte → printable character table."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def _clean(text: str, how: str) -> str:
    import ftfy  # lazy: ftfy only for the first text encoded

    text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
    if how == "canonicalize":
        text = text.replace("_", " ").translate(str.maketrans("", "", string.punctuation))
        return " ".join(text.lower().split()).strip()
    text = " ".join(text.split()).strip()
    return text.lower() if how == "lower" else text


class ClipTokenizer:
    """``ClipTokenizer(context_length)(texts)`` → int64 ids ``[N, context_length]``, zero-padded;
    a text too long is cut and ends with the end-of-text id, as open_clip does."""

    def __init__(self, context_length: int = 77, clean: str = "lower", vocab: Path | None = None):
        import regex  # lazy: regex only for the first text encoded

        if clean not in CLEANS:
            raise ValueError(f"unknown clean function {clean!r}; one of {', '.join(CLEANS)}")
        self.context_length = context_length
        self.clean = clean
        merges_text = gzip.open(vocab or default_vocab()).read().decode("utf-8").split("\n")
        merges = [tuple(m.split()) for m in merges_text[1:49152 - 256 - 2 + 1]]
        self.byte_encoder = _bytes_to_unicode()
        vocab_list = list(self.byte_encoder.values())
        vocab_list += [v + "</w>" for v in vocab_list]
        vocab_list += ["".join(m) for m in merges]
        vocab_list += list(SPECIALS)
        self.encoder = {token: i for i, token in enumerate(vocab_list)}
        self.bpe_ranks = {m: i for i, m in enumerate(merges)}
        self.cache = {t: t for t in SPECIALS}
        self.sot, self.eot = self.encoder[SPECIALS[0]], self.encoder[SPECIALS[1]]
        self.pattern = regex.compile("|".join(SPECIALS) + r"""|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
                                     regex.IGNORECASE)

    def bpe(self, token: str) -> str:
        """One pre-token → its BPE pieces joined by spaces (the last one ends in ``</w>``)."""
        if token in self.cache:
            return self.cache[token]
        word = tuple(token[:-1]) + (token[-1] + "</w>",)
        while len(word) > 1:
            pairs = set(zip(word, word[1:]))
            bigram = min(pairs, key=lambda pair: self.bpe_ranks.get(pair, float("inf")))
            if bigram not in self.bpe_ranks:
                break
            first, second = bigram
            merged: list[str] = []
            i = 0
            while i < len(word):
                if i < len(word) - 1 and word[i] == first and word[i + 1] == second:
                    merged.append(first + second)
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = tuple(merged)
        out = " ".join(word)
        self.cache[token] = out
        return out

    def encode(self, text: str) -> list[int]:
        """A text → its token ids, without start/end tokens."""
        ids: list[int] = []
        for token in self.pattern.findall(_clean(text, self.clean)):
            token = "".join(self.byte_encoder[b] for b in token.encode("utf-8"))
            ids.extend(self.encoder[piece] for piece in self.bpe(token).split(" "))
        return ids

    def __call__(self, texts: str | Sequence[str]) -> np.ndarray:
        if isinstance(texts, str):
            texts = [texts]
        out = np.zeros((len(texts), self.context_length), dtype=np.int64)
        for row, text in enumerate(texts):
            ids = [self.sot] + self.encode(text) + [self.eot]
            if len(ids) > self.context_length:
                ids = ids[:self.context_length]
                ids[-1] = self.eot
            out[row, :len(ids)] = ids
        return out
