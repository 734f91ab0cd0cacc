"""A local job's memory and cpus, enforced as `jobvisor.job_limits.probe` found possible: a
cgroup v2 per job (memory.max without swap, cpu.max), or RLIMIT_AS; and "out of memory" told
apart at the end (the cgroup's oom_kill count, or an allocation failure in the job's last
output under RLIMIT_AS).

Limits are set right after the spawn (`prlimit`, or the pid written to the job's cgroup): the
program has just been exec'd and has allocated nothing of its own yet.
"""

from __future__ import annotations

import errno
import logging
import os
import resource
from pathlib import Path

from jobvisor.job_limits import LimitKind, LimitMode
from jobvisor.reasons import out_of_memory
from jobvisor.resources import Resources

from agent.jobs import JobRecord

logger = logging.getLogger(__name__)

CPU_PERIOD = 100_000  # microseconds: cpu.max's period; the quota is cpus times it
TAIL_BYTES = 4096  # of the output log, looked at for an allocation failure under RLIMIT_AS
# What a program prints when an allocation fails (Python, C's perror/strerror, C++, Fortran, Java)
ALLOCATION_FAILED = (b"MemoryError", b"Cannot allocate memory", b"std::bad_alloc", b"out of memory",
                     b"Out of memory", b"OutOfMemoryError", b"memory allocation failed")


def mib(value: int) -> str:
    return f"{value / 1024**2:.0f} MiB" if value % 1024**2 == 0 else f"{value / 1024**2:.1f} MiB"


class JobLimits:
    def __init__(self, mode: LimitMode) -> None:
        self.mode = mode
        self._base = Path(mode.cgroup) if mode.kind is LimitKind.CGROUP else None
        self._ready = False
        self._applied: dict[str, tuple[int | None, Path | None]] = {}  # job id -> (memory, its cgroup)

    @property
    def kind(self) -> LimitKind:
        return self.mode.kind

    def apply(self, job: JobRecord, resources: Resources) -> None:
        """Limit the job's just spawned process (job.pid) to what it asked for."""
        if self.mode.kind is LimitKind.NONE or job.pid is None:
            return
        if self.mode.kind is LimitKind.CGROUP:
            try:
                self._applied[job.job_id] = (resources.memory, self._into_cgroup(job, resources))
                return
            except OSError as exc:  # the subtree went away or refused: the address-space limit still holds
                logger.warning("job %s: cannot make its cgroup (%s); RLIMIT_AS from now on", job.job_id, exc)
                self.mode = LimitMode(LimitKind.RLIMIT, why=f"making a job's cgroup failed: {exc.strerror or exc}")
        if resources.memory is None:
            return
        try:
            resource.prlimit(job.pid, resource.RLIMIT_AS, (resources.memory, resources.memory))
        except (OSError, ValueError) as exc:
            logger.warning("job %s: cannot set its memory limit: %s", job.job_id, exc)
            return
        self._applied[job.job_id] = (resources.memory, None)

    def finish(self, job: JobRecord, returncode: int) -> str | None:
        """At the job's end (its processes reaped): "out of memory ..." when its limit ended
        it, else None; its cgroup is removed."""
        memory, cgroup = self._applied.pop(job.job_id, (None, None))
        if cgroup is not None:
            kills = _oom_kills(cgroup)
            try:
                cgroup.rmdir()
            except OSError as exc:
                logger.warning("job %s: cannot remove its cgroup %s: %s", job.job_id, cgroup, exc)
            if kills:
                limit = f" of {mib(memory)}" if memory else ""
                return out_of_memory(f"the kernel killed the job when it reached its memory limit{limit} (cgroup)")
            return None
        if memory is None or returncode == 0:
            return None
        failure = _allocation_failure(job.log_path)
        if failure is None:
            return None
        return out_of_memory(f"an allocation failed at the job's memory limit of {mib(memory)} "
                             f"(RLIMIT_AS, its address space; it printed {failure.decode()!r})")

    # ------------------------------------------------------------------ cgroup v2

    def _setup(self) -> None:
        """Once: the base cgroup hands memory and cpu to its children. A cgroup that holds
        processes cannot (cgroup v2's no-internal-process rule), so they move to a leaf first."""
        base = self._base
        controllers = (base / "cgroup.subtree_control").read_text().split()
        is_root = not (base / "cgroup.type").exists()  # the root may hold processes beside children
        if "memory" not in controllers and not is_root:
            leaf = base / "jobvisor-procs"
            leaf.mkdir(exist_ok=True)
            for pid in (base / "cgroup.procs").read_text().split():
                try:
                    (leaf / "cgroup.procs").write_text(pid)
                except OSError as exc:
                    if exc.errno != errno.ESRCH:
                        raise
        if "memory" not in controllers:
            (base / "cgroup.subtree_control").write_text("+memory")
        try:
            (base / "cgroup.subtree_control").write_text("+cpu")
        except OSError as exc:
            logger.info("cgroup %s: no cpu controller for jobs (%s): cpus are not enforced", base, exc)
        self._ready = True

    def _into_cgroup(self, job: JobRecord, resources: Resources) -> Path:
        if not self._ready:
            self._setup()
        cgroup = self._base / f"job-{job.job_id}"
        cgroup.mkdir(exist_ok=True)
        if resources.memory is not None:
            (cgroup / "memory.max").write_text(str(resources.memory))
            _write_if_there(cgroup / "memory.swap.max", "0")
            _write_if_there(cgroup / "memory.oom.group", "1")  # an OOM kill takes the whole job
        _write_if_there(cgroup / "cpu.max", f"{resources.cpus * CPU_PERIOD} {CPU_PERIOD}")
        (cgroup / "cgroup.procs").write_text(str(job.pid))
        return cgroup


def _write_if_there(path: Path, value: str) -> None:
    try:
        path.write_text(value)
    except FileNotFoundError:
        pass


def _oom_kills(cgroup: Path) -> int:
    try:
        text = (cgroup / "memory.events").read_text()
    except OSError:
        return 0
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == "oom_kill" and value.strip().isdigit():
            return int(value)
    return 0


def _allocation_failure(log_path: str) -> bytes | None:
    """Which words of an allocation failure the end of the job's output shows, if any."""
    try:
        fd = os.open(log_path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        size = os.fstat(fd).st_size
        tail = os.pread(fd, TAIL_BYTES, max(0, size - TAIL_BYTES))
    except OSError:
        return None
    finally:
        os.close(fd)
    return next((words for words in ALLOCATION_FAILED if words in tail), None)
