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


def write_retry_delay(failures: int) -> float:
    """Seconds before a failed write (a commit, log bytes) is tried again: the store's writers
    keep what failed and retry it, a disk full or a database gone being something that passes."""
    return backoff_delay(failures, base=0.2, cap=5.0)
