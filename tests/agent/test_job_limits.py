"""Which limits the local driver can enforce (probed from /proc and the cgroup v2 files), and
the agent's cgroup bookkeeping, against a directory laid out as the kernel's would be. The real
enforcement is tested in tests/agent/test_agent_inputs.py and tests/integration."""

from __future__ import annotations

from pathlib import Path

from jobvisor.job_limits import LimitKind, LimitMode, probe
from jobvisor.resources import Resources

from agent.job_limits import JobLimits
from agent.jobs import JobRecord


def fake_proc(tmp_path: Path, controllers: str, *, v2: bool = True) -> Path:
    proc = tmp_path / "proc"
    proc.mkdir(parents=True)
    cgroup = tmp_path / "cg" / "svc"
    cgroup.mkdir(parents=True)
    (cgroup / "cgroup.controllers").write_text(controllers + "\n")
    (cgroup / "cgroup.subtree_control").write_text("")
    mounts = f"cgroup2 {tmp_path / 'cg'} cgroup2 rw 0 0\n" if v2 else "tmpfs /sys/fs/cgroup tmpfs rw 0 0\n"
    (proc / "mounts").write_text("proc /proc proc rw 0 0\n" + mounts)
    (proc / "cgroup").write_text("4:memory:/x\n0::/svc\n")
    return proc


def test_cgroup_v2_with_memory_and_write_access_is_used(tmp_path):
    mode = probe("auto", fake_proc(tmp_path, "cpu memory pids"))
    assert mode.kind is LimitKind.CGROUP and mode.cgroup == str(tmp_path / "cg" / "svc")
    assert mode.view()["memory"] == "cgroup v2 memory.max" and mode.view()["cpus"] == "cgroup v2 cpu.max"


def test_without_a_memory_controller_it_falls_back_to_rlimit_and_says_why(tmp_path):
    mode = probe("auto", fake_proc(tmp_path, "hugetlb"))
    assert mode.kind is LimitKind.RLIMIT and "no memory controller" in mode.why
    assert mode.view() == {"limits": "rlimit", "memory": "RLIMIT_AS (address space)", "cpus": "not enforced",
                           "why": mode.why}
    assert probe("cgroup", fake_proc(tmp_path / "b", "hugetlb")).kind is LimitKind.NONE  # asked for, not there
    assert probe("auto", fake_proc(tmp_path / "c", "memory", v2=False)).why == "no cgroup v2 hierarchy is mounted"
    assert probe("none").kind is LimitKind.NONE and probe("rlimit").kind is LimitKind.RLIMIT


def test_a_jobs_cgroup_gets_its_limits_and_an_oom_kill_is_its_reason(tmp_path):
    base = tmp_path / "svc"
    base.mkdir()
    (base / "cgroup.subtree_control").write_text("memory cpu\n")
    (base / "cgroup.type").write_text("domain\n")
    limits = JobLimits(LimitMode(LimitKind.CGROUP, cgroup=str(base)))
    job = JobRecord("j1", 1, "shell", tmp_path / "run")
    job.pid = 4242
    (base / "job-j1").mkdir()
    for name in ("memory.max", "memory.swap.max", "memory.oom.group", "cpu.max", "cgroup.procs"):
        (base / "job-j1" / name).write_text("")
    limits.apply(job, Resources(cpus=2, memory=100 * 1024**2))
    cgroup = base / "job-j1"
    assert (cgroup / "memory.max").read_text() == str(100 * 1024**2)
    assert (cgroup / "memory.swap.max").read_text() == "0" and (cgroup / "memory.oom.group").read_text() == "1"
    assert (cgroup / "cpu.max").read_text() == "200000 100000"
    assert (cgroup / "cgroup.procs").read_text() == "4242"
    (cgroup / "memory.events").write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n")
    reason = limits.finish(job, -9)
    assert reason == "out of memory: the kernel killed the job when it reached its memory limit of 100 MiB (cgroup)"
    assert limits.finish(job, -9) is None  # forgotten once finished


def test_the_setup_moves_the_base_cgroups_processes_to_a_leaf_before_handing_memory_down(tmp_path):
    """cgroup v2 refuses controllers for the children of a cgroup that holds processes (the
    supervisor, the agent): they move to a leaf first. Files stand in for the kernel's here."""
    base = tmp_path / "svc"
    (base / "jobvisor-procs").mkdir(parents=True)
    (base / "cgroup.type").write_text("domain\n")
    (base / "cgroup.subtree_control").write_text("\n")
    (base / "cgroup.procs").write_text("101\n102\n")
    limits = JobLimits(LimitMode(LimitKind.CGROUP, cgroup=str(base)))
    limits._setup()
    assert (base / "jobvisor-procs" / "cgroup.procs").read_text() == "102"  # each pid written in turn
    assert (base / "cgroup.subtree_control").read_text() == "+cpu"  # after "+memory"
