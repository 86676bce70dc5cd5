"""A label's per-option scores as the catalog stores them: two 16-bit numbers per option.

``labels.option_scores`` holds, for each option of the label's group in prompt-set order, its
cosine and its confidence, quantised to uint16 (steps of 3e-5 and 1.5e-5: finer than the four
digits the JSON used to keep). The option names are not stored: they are the group's options in
the prompt set the label was proposed with (``labels.prompt_set_id``), which the catalog keeps
verbatim. A label costs 4 bytes per option instead of about 60 bytes of JSON.
"""

from __future__ import annotations

import struct
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np
import yaml
from .prompts import parse_prompt_set

if TYPE_CHECKING:
    from ..store.catalog import Label, PromptSetRecord

_TOP = 65535
DIGITS = 5  # decoded scores are rounded to this many digits, below the quantisation step's noise


def encode(cosines: np.ndarray, confidence: np.ndarray) -> list[bytes]:
    """``cosines`` and ``confidence`` ``[N, O]`` → one ``4 * O``-byte blob per image."""
    cos = np.rint((np.clip(cosines, -1.0, 1.0) + 1.0) * (_TOP / 2.0))
    conf = np.rint(np.clip(confidence, 0.0, 1.0) * _TOP)
    packed = np.stack([cos, conf], axis=2).astype("<u2")  # [N, O, 2]
    width = packed.shape[1] * 4
    raw = packed.tobytes()
    return [raw[i:i + width] for i in range(0, len(raw), width)]


def decode_array(blob: bytes) -> np.ndarray:
    """A blob → ``[O, 2]`` float64: (cosine, confidence) per option."""
    packed = np.frombuffer(blob, dtype="<u2").reshape(-1, 2).astype(np.float64)
    return np.stack([packed[:, 0] * (2.0 / _TOP) - 1.0, packed[:, 1] / _TOP], axis=1)


@lru_cache(maxsize=1)
def _values() -> tuple[list[float], list[float]]:
    """Every uint16's decoded cosine and confidence, rounded as :func:`decode_array`'s readers round."""
    steps = np.arange(_TOP + 1, dtype=np.float64)
    return (np.round(steps * (2.0 / _TOP) - 1.0, DIGITS).tolist(), np.round(steps / _TOP, DIGITS).tolist())


def decode(blob: bytes | None, names: list[str] | None) -> dict[str, dict[str, float]]:
    """``{option: {"cosine", "confidence"}}`` in option order; empty when either part is missing
    or they disagree (a blob that is not this group's).

    Two table lookups per option, not numpy: a search answer decodes a few hundred blobs of
    about ten options, where numpy's per-call overhead cost more than the arithmetic.
    """
    if not blob or not names or len(blob) != 4 * len(names):
        return {}
    cosine, confidence = _values()
    packed = struct.unpack(f"<{2 * len(names)}H", blob)
    return {name: {"cosine": cosine[c], "confidence": confidence[p]}
            for name, c, p in zip(names, packed[0::2], packed[1::2])}


@lru_cache(maxsize=64)
def _option_names(content_hash: str, source: str) -> dict[str, list[str]]:
    """``{group: [option, ...]}`` of a stored prompt set; keyed by content, so any catalog may share it."""
    prompt_set = parse_prompt_set(yaml.safe_load(source), content_hash, source, content_hash)
    return {name: list(group.option_names) for name, group in prompt_set.groups.items()}


def option_names(record: "PromptSetRecord | None", group: str) -> list[str] | None:
    """The group's options, in the order their scores are stored, in the prompt set ``record``."""
    if record is None:
        return None
    return _option_names(record.content_hash, record.source).get(group)


def label_scores(label: "Label") -> dict[str, dict[str, float]]:
    """A label's ``{option: {"cosine", "confidence"}}``; ``{}`` when the model never scored it.

    Reads ``label.prompt_set`` (one query per prompt set and session: the rest come from the
    session's identity map).
    """
    if not label.option_scores:
        return {}
    return decode(label.option_scores, option_names(label.prompt_set, label.group))


def group_names(record: "PromptSetRecord") -> list[str]:
    """The groups of the stored prompt set ``record``, in the set's own order."""
    return list(_option_names(record.content_hash, record.source))
