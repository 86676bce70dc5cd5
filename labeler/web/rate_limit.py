"""Per-user rate limits on the costly requests (search) and the writes (review decisions), and
how many searches run at once.

A token bucket per (user, kind) in this process: ``per_minute`` requests at once, refilled at
``per_minute`` a minute. Past it, 429 with ``Retry-After``, so one reviewer's script cannot take
the server's CPU (search) or its catalog's write lock (decisions) from everyone else.

Searches also take a slot while they run (:class:`SearchSlots`): a user's searches past
``searches_per_user`` at once are 429, everyone's past ``searches_at_once`` are 503, both with
``Retry-After: 1`` and at once, never queued: a queued search would hold a request thread, and
eight long searches held all of waitress's eight while a login waited 4.7 s behind them.
"""

from __future__ import annotations

import functools
import math
import threading
import time
from collections import Counter

from flask import current_app, g, make_response

from .context import error_response

SEARCH, DECISIONS = "search", "decisions"
SETTINGS = {SEARCH: ("search_per_minute", "LABELER_SEARCH_PER_MINUTE"),
            DECISIONS: ("decisions_per_minute", "LABELER_DECISIONS_PER_MINUTE")}


class RateLimiter:
    """``take(key)`` → 0 when allowed, else the seconds until the next request would be."""

    def __init__(self, per_minute: int, clock=time.monotonic):
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0  # tokens a second
        self.clock = clock
        self._buckets: dict[object, tuple[float, float]] = {}  # key → (tokens, when)
        self._lock = threading.Lock()

    def take(self, key: object) -> float:
        now = self.clock()
        with self._lock:
            tokens, when = self._buckets.get(key, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - when) * self.rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / self.rate


class SearchSlots:
    """Searches running now, per user and in all; ``enter`` refuses past either limit."""

    USER, SERVER = "user", "server"

    def __init__(self, per_user: int, total: int):
        self.per_user, self.total = per_user, total
        self._running: Counter = Counter()
        self._all = 0
        self._lock = threading.Lock()

    def enter(self, key: object) -> str | None:
        """None when the search may run (then ``leave`` after it), else which limit refused it."""
        with self._lock:
            if self._running[key] >= self.per_user:
                return self.USER
            if self._all >= self.total:
                return self.SERVER
            self._running[key] += 1
            self._all += 1
            return None

    def leave(self, key: object) -> None:
        with self._lock:
            self._running[key] -= 1
            if self._running[key] <= 0:
                del self._running[key]
            self._all -= 1


def init_app(app, config) -> None:
    app.extensions["labeler_rate_limits"] = {kind: RateLimiter(getattr(config, setting))
                                             for kind, (setting, _) in SETTINGS.items()}
    app.extensions["labeler_search_slots"] = SearchSlots(config.searches_per_user, config.searches_at_once)


def fit_search_slots(app, threads: int) -> int:
    """Keep the searches running at once to at most half of ``threads`` request threads (so the
    other half always serves logins and pages); returns the limit."""
    slots = app.extensions["labeler_search_slots"]
    slots.total = max(1, min(slots.total, threads // 2))
    return slots.total


def search_slot(view):
    """A view decorator: the search runs in a slot of :class:`SearchSlots`, or is refused at once."""

    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        user = g.get("user")
        slots = current_app.extensions["labeler_search_slots"]
        key = user.id if user is not None else None
        refused = slots.enter(key)
        if refused is not None:
            if refused == SearchSlots.USER:
                status, message = 429, (f"too many searches at once: {slots.per_user} per user "
                                        "(LABELER_SEARCHES_PER_USER); try again in 1 s")
            else:
                status, message = 503, (f"the server is busy: {slots.total} searches are running "
                                        "(LABELER_SEARCHES_AT_ONCE); try again in 1 s")
            response = make_response(error_response(status, message, retry_after=1))
            response.headers["Retry-After"] = "1"
            return response
        try:
            return view(*args, **kwargs)
        finally:
            slots.leave(key)

    return wrapper


def rate_limited(kind: str):
    """A view decorator: at most the configured number of ``kind`` requests per user a minute."""

    def decorate(view):
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            user = g.get("user")
            if user is not None:
                wait = current_app.extensions["labeler_rate_limits"][kind].take(user.id)
                if wait > 0:
                    setting, env = SETTINGS[kind]
                    limit = getattr(current_app.extensions["labeler"].config, setting)
                    seconds = max(1, math.ceil(wait))
                    response = make_response(error_response(
                        429, f"too many {kind} requests: {limit} a minute per user ({env}); "
                             f"try again in {seconds} s", retry_after=seconds))
                    response.headers["Retry-After"] = str(seconds)
                    return response
            return view(*args, **kwargs)

        return wrapper

    return decorate
