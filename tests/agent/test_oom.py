"""Out-of-memory kills told apart from other SIGKILLs through the cgroup's oom_kill counter."""

from __future__ import annotations

import signal

from agent.oom import OomCounter


def _cgroup_v1(root, kills: int, limit: str = "268435456"):
    (root / "memory").mkdir(exist_ok=True)
    (root / "memory" / "memory.oom_control").write_text(f"oom_kill_disable 0\nunder_oom 0\noom_kill {kills}\n")
    (root / "memory" / "memory.limit_in_bytes").write_text(limit + "\n")


def test_a_sigkill_with_a_new_oom_kill_is_out_of_memory(tmp_path):
    _cgroup_v1(tmp_path, 2)
    counter = OomCounter(tmp_path)
    assert counter.explain(-signal.SIGKILL) is None  # kills before the agent started do not count
    _cgroup_v1(tmp_path, 3)
    assert counter.explain(1) is None  # an ordinary failure is not looked at
    reason = counter.explain(-signal.SIGKILL)
    assert reason.startswith("out of memory") and "256 MiB" in reason
    assert counter.explain(-signal.SIGKILL) is None  # one kill explains one job
    _cgroup_v1(tmp_path, 4, limit="9223372036854771712")  # v1's "no limit"
    assert counter.explain(128 + signal.SIGKILL) == (
        "out of memory: the kernel killed the job (SIGKILL) when it reached the container's memory limit")


def test_cgroup_v2_and_no_cgroup(tmp_path):
    (tmp_path / "memory.events").write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 0\n")
    (tmp_path / "memory.max").write_text("134217728\n")
    counter = OomCounter(tmp_path)
    (tmp_path / "memory.events").write_text("low 0\nhigh 0\nmax 5\noom 2\noom_kill 1\n")
    assert "128 MiB" in counter.explain(-signal.SIGKILL)
    nothing = OomCounter(tmp_path / "absent")
    assert nothing.explain(-signal.SIGKILL) is None
    assert OomCounter.for_environment({}) is None
