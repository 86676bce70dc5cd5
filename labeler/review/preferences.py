"""A reviewer's preferences, stored in the catalog (``user_preferences``, migration 0018): the theme
(light, dark, or the system's), the grid's density, and their own keys for the review actions.

Everything a user sends is checked here before it is stored: an unknown preference, an unknown
action, a key the pages cannot bind, a key the browser keeps for itself (Ctrl+W, F5, ...) and two
actions on one key are refused with a :class:`PreferenceError` that names them. Which actions exist
and which keys they take by default is the caller's (the web's shortcut table): this module has
no Flask and no table of its own.
"""

from __future__ import annotations

import re
from typing import Mapping

from sqlalchemy.orm import Session

from ..errors import LabelerError
from ..store.catalog import UserPreferences, utcnow

THEMES = ("system", "light", "dark")  # system: follow prefers-color-scheme
DENSITIES = ("s", "m", "l")
DEFAULTS = {"theme": "system", "density": "m", "keys": {}}
NAMED_KEYS = ("ArrowLeft", "ArrowRight", "ArrowUp", "ArrowDown", "Enter", "Backspace", "Delete", "Home", "End",
              "PageUp", "PageDown")
# Keys the browser or the page's own navigation keeps: a binding there would close a tab, reload,
# or trap the keyboard.
RESERVED = {"Tab": "moves the focus", "Escape": "closes dialogs", " ": "scrolls and presses buttons",
            "Space": "scrolls and presses buttons", "Backspace": "goes back in some browsers"}
_MODIFIED = re.compile(r"^(Ctrl|Control|Alt|Meta|Cmd|Command|Option)\+", re.IGNORECASE)
_FUNCTION = re.compile(r"^F([1-9]|1[0-9]|2[0-4])$")


class PreferenceError(LabelerError):
    """Preferences that cannot be stored as sent; the message names the field and the key."""


def _key_problem(key: object) -> str | None:
    """Why ``key`` cannot be bound (None: it can): it must be a key as the pages name a key press."""
    if not isinstance(key, str) or not key:
        return "a key must be text, such as 'a', 'Shift+A' or 'ArrowLeft'"
    if _MODIFIED.match(key):
        return f"{key} is reserved by the browser (keys with Ctrl, Alt or Meta stay the browser's)"
    if _FUNCTION.match(key):
        return f"{key} is reserved by the browser (function keys: reload, full screen, developer tools)"
    if key in RESERVED:
        return f"{key!r} is reserved: it {RESERVED[key]}"
    if len(key) == 1 and key.isprintable():
        return None if not ("A" <= key <= "Z") else f"{key!r}: write a capital letter as 'Shift+{key}'"
    if re.fullmatch(r"Shift\+[A-Z]", key) or key in NAMED_KEYS or re.fullmatch(r"Shift\+Arrow(Left|Right|Up|Down)", key):
        return None
    return f"{key!r} is not a key the pages can bind; use one character, 'Shift+' and a capital letter, or one of " \
           + ", ".join(NAMED_KEYS)


def effective_keys(defaults: Mapping[str, list[str]], remapped: Mapping[str, str]) -> dict[str, list[str]]:
    """Each action's keys once ``remapped`` (action → key) replaces its first default key."""
    out = {action: list(keys) for action, keys in defaults.items()}
    for action, key in remapped.items():
        out[action] = [key, *out[action][1:]]
    return out


def _refuse_unknown(given, known, what: str) -> None:
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise PreferenceError(f"{what}{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; "
                              f"known: {', '.join(known)}")


def validate(settings: object, defaults: Mapping[str, list[str]], fixed: Mapping[str, str] | None = None) -> dict:
    """``settings`` checked and completed with :data:`DEFAULTS`, or :class:`PreferenceError`.

    ``defaults`` is every remappable action and its default keys (the first is the one a user's
    key replaces); ``fixed`` maps keys that cannot be moved (the options' 1-9 and letters) to what
    they do. Refused: an unknown preference or action, a key :func:`_key_problem` refuses, and a key
    bound twice (to two actions, or to an action and a fixed key), each named in the message.
    """
    if not isinstance(settings, dict):
        raise PreferenceError("preferences must be an object such as {\"theme\": \"dark\"}")
    _refuse_unknown(settings, DEFAULTS, "unknown preference")
    out = {**DEFAULTS, **settings}
    if out["theme"] not in THEMES:
        raise PreferenceError(f"theme: {out['theme']!r} is not one of {', '.join(THEMES)}")
    if out["density"] not in DENSITIES:
        raise PreferenceError(f"density: {out['density']!r} is not one of {', '.join(DENSITIES)}")
    keys = out["keys"]
    if not isinstance(keys, dict):
        raise PreferenceError("keys must be an object of action → key, such as {\"accept\": \"y\"}")
    _refuse_unknown(keys, sorted(defaults), "keys: unknown action")
    problems = [f"keys.{action}: {problem}" for action, key in sorted(keys.items())
                if (problem := _key_problem(key)) is not None]
    if problems:
        raise PreferenceError("; ".join(problems))
    # A user's own key that equals its action's default is no remapping at all.
    keys = {action: key for action, key in keys.items() if key != defaults[action][0]}
    bound: dict[str, list[str]] = {}
    for key, what in (fixed or {}).items():
        bound.setdefault(key, []).append(what)
    for action, action_keys in effective_keys(defaults, keys).items():
        for key in action_keys:
            bound.setdefault(key, []).append(action)
    clashes = [f"{key!r} would do {' and '.join(doers)}" for key, doers in sorted(bound.items()) if len(doers) > 1]
    if clashes:
        raise PreferenceError(f"keys: each key does one thing; {'; '.join(clashes)}")
    return {**out, "keys": dict(sorted(keys.items()))}


def get(session: Session, user_id: int) -> dict:
    """The user's stored preferences over :data:`DEFAULTS`."""
    row = session.get(UserPreferences, user_id)
    return {**DEFAULTS, **(row.settings if row is not None else {})}


def save(session: Session, user_id: int, changes: object, defaults: Mapping[str, list[str]],
         fixed: Mapping[str, str] | None = None) -> dict:
    """Merge ``changes`` (some preferences; ``keys`` replaces the whole key map) into the user's,
    validate the result and store it; returns it. Nothing is stored when it is refused."""
    if not isinstance(changes, dict):
        raise PreferenceError("preferences must be an object such as {\"theme\": \"dark\"}")
    current = get(session, user_id)
    checked = validate({**current, **changes}, defaults, fixed)
    row = session.get(UserPreferences, user_id)
    if row is None:
        session.add(UserPreferences(user_id=user_id, settings=checked, updated_at=utcnow()))
    else:
        row.settings, row.updated_at = checked, utcnow()
    session.flush()
    return checked
