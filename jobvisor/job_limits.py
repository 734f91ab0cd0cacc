"""How a local job's `memory` and `cpus` are enforced on this machine, found out once.

* `cgroup`: a cgroup v2 per job under a subtree this process may manage (root, or a cgroup
  delegated to its user): `memory.max` (no swap on top) and `cpu.max`; an out-of-memory kill is
  read from the job cgroup's `memory.events`.
* `rlimit`: where no such cgroup can be made (no cgroup v2 memory controller, as on a host with
  the v1 hierarchy, or no permission): `RLIMIT_AS`, the job's address space, for memory. It
  counts mapped memory rather than memory in use (a program that maps much more than it
  touches needs more), and cpus are not enforced. An allocation over it fails in the job
  (Python's MemoryError, ENOMEM), which the agent reports as "out of memory".
* `none`: nothing is enforced (the `[local] limits = "none"` setting).

The local driver asks once for `jobvisor status`, and passes its setting to its agents, which
ask again and enforce what they find.
"""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass
from pathlib import Path

SETTINGS = ("auto", "cgroup", "rlimit", "none")


class LimitKind(enum.StrEnum):
    CGROUP = "cgroup"
    RLIMIT = "rlimit"
    NONE = "none"


@dataclass(frozen=True)
class LimitMode:
    kind: LimitKind
    cgroup: str = ""  # the cgroup v2 directory whose subtree holds the jobs' cgroups (CGROUP)
    why: str = ""  # why this kind and not a stronger one

    def view(self) -> dict:
        """What `GET /status` shows for the local driver."""
        memory = {LimitKind.CGROUP: "cgroup v2 memory.max", LimitKind.RLIMIT: "RLIMIT_AS (address space)",
                  LimitKind.NONE: "not enforced"}[self.kind]
        cpus = "cgroup v2 cpu.max" if self.kind is LimitKind.CGROUP else "not enforced"
        return {"limits": str(self.kind), "memory": memory, "cpus": cpus, "why": self.why}


def cgroup2_dir(proc: Path = Path("/proc/self")) -> tuple[Path | None, str]:
    """This process's cgroup v2 directory, or None and why not."""
    mount = None
    try:
        for line in (proc / "mounts").read_text().splitlines():
            fields = line.split()
            if len(fields) >= 3 and fields[2] == "cgroup2":
                mount = fields[1]
                break
        own = next((line[3:] for line in (proc / "cgroup").read_text().splitlines() if line.startswith("0::")), None)
    except OSError as exc:
        return None, f"cannot read this process's cgroups: {exc.strerror or exc}"
    if mount is None or own is None:
        return None, "no cgroup v2 hierarchy is mounted"
    return Path(mount + own.rstrip("/")) if own != "/" else Path(mount), ""


def probe(setting: str = "auto", proc: Path = Path("/proc/self")) -> LimitMode:
    """What `[local] limits = setting` gives on this machine."""
    if setting == "none":
        return LimitMode(LimitKind.NONE, why="[local] limits is 'none'")
    if setting == "rlimit":
        return LimitMode(LimitKind.RLIMIT, why="[local] limits is 'rlimit'")
    where, why = cgroup2_dir(proc)
    if where is not None:
        try:
            controllers = (where / "cgroup.controllers").read_text().split()
        except OSError as exc:
            controllers, why = [], f"cannot read {where}/cgroup.controllers: {exc.strerror or exc}"
        if where is not None and "memory" not in controllers:
            why = why or f"the cgroup v2 hierarchy offers no memory controller at {where} (a cgroup v1 host?)"
        elif not (os.access(where, os.W_OK) and os.access(where / "cgroup.subtree_control", os.W_OK)):
            why = f"{where} is not writable by this user (not root, and not delegated to it)"
        else:
            return LimitMode(LimitKind.CGROUP, cgroup=str(where), why="cgroup v2 with the memory controller, writable")
    if setting == "cgroup":
        return LimitMode(LimitKind.NONE, why=f"[local] limits is 'cgroup' but {why}")
    return LimitMode(LimitKind.RLIMIT, why=why)
