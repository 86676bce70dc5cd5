"""The rules a label value follows, wherever it comes from (the review UI, an API call, an import).

Pure: strings in, a reason or None out. A value is NFC-normalised text of at most
``MAX_VALUE_LENGTH`` characters with no control characters (they break the CSV round trip), no
bidirectional overrides or invisible formatting characters (they make one value read as another),
and it does not imitate one of the group's options with look-alike letters (a Cyrillic ``а`` in
``hаmmer``) while differing from it.
"""

from __future__ import annotations

import unicodedata
from typing import Iterable

MAX_VALUE_LENGTH = 256
# Explicit direction marks, embeddings, overrides and isolates (the Trojan Source characters).
BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
# Cyrillic and Greek letters drawn like Latin ones: enough to catch a look-alike option name.
_CONFUSABLES = str.maketrans(
    "аеорсухіјѕԁһӏԛԝАВЕКМНОРСТХІЈЅѴαβεικνορτυχΑΒΕΖΗΙΚΜΝΟΡΤΥΧ",
    "aeopcyxijsdhlqwABEKMHOPCTXIJSVabeiknoptuxABEZHIKMNOPTYX")


def normalise(value: str) -> str:
    """``value`` as stored: NFC, spaces trimmed (never tabs: ``\\t=1`` must not become ``=1``)."""
    return unicodedata.normalize("NFC", value).strip(" ")


def value_problem(value: str) -> str | None:
    """Why ``value`` cannot be a label value, or None."""
    if len(value) > MAX_VALUE_LENGTH:
        return f"longer than {MAX_VALUE_LENGTH} characters"
    if any(unicodedata.category(ch) == "Cc" for ch in value):
        return "holds control characters (tab, newline, NUL, ...)"
    if any(ch in BIDI_CONTROLS for ch in value):
        return "holds bidirectional control characters (a right-to-left override, ...)"
    if any(unicodedata.category(ch) == "Cf" for ch in value):
        return "holds invisible formatting characters (a zero-width space, ...)"
    return None


def _skeleton(text: str) -> str:
    folded = unicodedata.normalize("NFKC", text).translate(_CONFUSABLES)
    return "".join(ch for ch in folded if unicodedata.category(ch) not in ("Cf", "Mn")).casefold()


def lookalike(value: str, options: Iterable[str]) -> str | None:
    """The option ``value`` imitates (the same letters to the eye, not the same text), or None."""
    skeleton = _skeleton(value)
    for option in options:
        if option != value and _skeleton(option) == skeleton and value.casefold() != option.casefold():
            return option
    return None
