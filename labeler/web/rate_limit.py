"""Per-user rate limits on the costly requests (search) and the writes (review decisions).

A token bucket per (user, kind) in this process: ``per_minute`` requests at once, refilled at
``per_minute`` a minute. Past it, 429 with ``Retry-After``, so one reviewer's script cannot take
the server's CPU (search) or its catalog's write lock (decisions) from everyone else.
"""

from __future__ import annotations

import functools
import math
import threading
import time

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


def init_app(app, config) -> None:
    app.extensions["labeler_rate_limits"] = {kind: RateLimiter(getattr(config, setting))
                                             for kind, (setting, _) in SETTINGS.items()}


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
