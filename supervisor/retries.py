"""How long a new attempt waits before it queues: capped exponential backoff, without jitter.

Pure, so it can be tested without a clock. No jitter: a retry's wait is stated in its reason
("retrying in 4 s") and persisted as `retry_at`, so the number shown is the number kept. The
waits of many jobs failing together are spread by their ends anyway.
"""

from __future__ import annotations

from dataclasses import dataclass

from jobvisor.config import SupervisorConfig


@dataclass(frozen=True, slots=True)
class RetryBackoff:
    """`base` seconds before the first retry, doubled for each later one, never above `cap`."""

    base: float = SupervisorConfig.retry_backoff
    cap: float = SupervisorConfig.retry_backoff_max

    @classmethod
    def of(cls, cfg: SupervisorConfig) -> "RetryBackoff":
        return cls(cfg.retry_backoff, cfg.retry_backoff_max)

    def delay(self, ended_attempt: int) -> float:
        """Seconds before the attempt after `ended_attempt` (1-based) may queue."""
        if self.base <= 0:
            return 0.0
        return min(self.cap, self.base * 2.0 ** min(max(ended_attempt - 1, 0), 32))
