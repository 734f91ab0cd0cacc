"""Telling an out-of-memory kill from any other SIGKILL, for an agent in a container.

The kernel kills a process of a cgroup that reaches its memory limit with SIGKILL, which looks
like any other SIGKILL to the parent. The container's own cgroup counts those kills
(`oom_kill` in memory.events on cgroup v2, in memory.oom_control on v1): when a job dies of
SIGKILL that the agent did not send and the counter grew, the memory limit killed it.
"""

from __future__ import annotations

import signal
from pathlib import Path

from jobvisor import env_names
from jobvisor.reasons import out_of_memory

CGROUP_ROOT = Path("/sys/fs/cgroup")
ENV_CONTAINER = env_names.CONTAINER  # set by container drivers: this cgroup is the agent's own


class OomCounter:
    def __init__(self, root: Path = CGROUP_ROOT) -> None:
        v2 = root / "memory.events"
        if v2.exists():
            self._events, self._limit = v2, root / "memory.max"
        else:
            self._events, self._limit = root / "memory" / "memory.oom_control", root / "memory" / "memory.limit_in_bytes"
        self.seen = self.count() or 0

    @classmethod
    def for_environment(cls, environ) -> "OomCounter | None":
        return cls() if environ.get(ENV_CONTAINER) else None

    def count(self) -> int | None:
        try:
            text = self._events.read_text()
        except OSError:
            return None
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill" and value.strip().isdigit():
                return int(value)
        return None

    def limit(self) -> int | None:
        try:
            text = self._limit.read_text().strip()
        except OSError:
            return None
        if not text.isdigit() or int(text) >= 1 << 60:  # "max" or the v1 "unlimited" sentinel
            return None
        return int(text)

    def explain(self, returncode: int) -> str | None:
        """The reason of a job that ended with `returncode` when the memory limit killed it (the
        job itself: -SIGKILL, or a process it waited for, as a shell reports it: 128 + SIGKILL)."""
        if returncode not in (-signal.SIGKILL, 128 + signal.SIGKILL):
            return None
        count = self.count()
        if count is None or count <= self.seen:
            return None
        self.seen += 1  # one kill accounts for one job
        limit = self.limit()
        where = f"the container's memory limit of {_mib(limit)}" if limit else "the container's memory limit"
        return out_of_memory(f"the kernel killed the job (SIGKILL) when it reached {where}")


def _mib(value: int) -> str:
    return f"{value / 1024**2:.0f} MiB" if value % 1024**2 == 0 else f"{value / 1024**2:.1f} MiB"
