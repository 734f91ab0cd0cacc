"""Pure timing maths (backoff, keepalive), each testable without a clock."""

from __future__ import annotations

import random


def backoff_delay(attempt: int, *, base: float = 0.1, cap: float = 10.0, rng: random.Random | None = None) -> float:
    """Capped exponential backoff with full jitter (AWS architecture blog's 'full jitter').

    attempt 0 -> up to `base`, doubling per attempt, never above `cap`. Full jitter spreads
    reconnecting agents so a restarted supervisor is not hit by all of them at once.
    """
    if attempt < 0:
        raise ValueError("attempt must be >= 0")
    ceiling = min(cap, base * (2 ** min(attempt, 32)))
    return (rng or random).uniform(0.0, ceiling)


def ping_interval(idle_timeout: float) -> float:
    """Send a keepalive ping often enough that three can be missed before the peer is dead."""
    return max(0.5, idle_timeout / 3.0)


class Pacer:
    """When to send the next frame of a stream: at once, unless the last two frames were both
    closer together than `interval` (sustained load), then `interval` after the last one.

    Under load this turns one frame per event into one frame per `interval` with many events
    in it; a lone request/reply exchange is never delayed."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._last = float("-inf")
        self._busy = False

    def delay(self, now: float) -> float:
        if not self._busy:
            return 0.0
        return max(0.0, self._last + self.interval - now)

    def sent(self, now: float) -> None:
        self._busy = now - self._last < self.interval
        self._last = now


def batch_delay(now: float, last_start: float, last_size: int, *, interval: float, busy_size: int) -> float:
    """How long the next batch of a writer waits so that more work joins it.

    Only under load, judged by the size of the last batch (at least `busy_size` items): then
    the next batch starts no sooner than `interval` after the last one started. A lone job's
    updates come in batches of one or two and never wait, so its latency is untouched, while a
    burst of thousands of transitions a second costs one commit per `interval`."""
    if last_size < busy_size:
        return 0.0
    return max(0.0, last_start + interval - now)
