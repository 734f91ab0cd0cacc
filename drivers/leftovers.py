"""Stop what a dead local agent left running.

Each job runs in its own process group, so that a cancel reaches the job's whole tree and a
Ctrl-C meant for someone else does not. The same detachment means nothing stops the jobs of an
agent killed with SIGKILL: their attempt is recorded `lost`, and a retry would run beside the
old attempt, in the same run dir. So when a local agent's process is gone, its driver stops
what it left.

Every job inherits its agent's `JOBVISOR_AGENT_ID` (agent ids are unique), and so do the
job's own children: the processes to stop are those whose starting environment
(`/proc/PID/environ`) carries it. Each is held by a pidfd from before its environment is read
until it is signalled, so a pid reused meanwhile by another process is never hit.
"""

from __future__ import annotations

import os
import select
import signal
from pathlib import Path

from jobvisor import env_names

AGENT_ID_VAR = env_names.AGENT_ID


def stop_leftovers(agent_id: str, proc: Path = Path("/proc")) -> list[int]:
    """SIGKILL every process (and the process group of every group leader) started with
    `JOBVISOR_AGENT_ID=agent_id`; the pids signalled. Blocking: /proc is read whole, so call it
    off the event loop. Processes of other users cannot be read, and are left alone."""
    marker = f"{AGENT_ID_VAR}={agent_id}".encode() + b"\0"
    me = os.getpid()
    stopped: list[int] = []
    for entry in os.scandir(proc):
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        pid = int(entry.name)
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:  # gone already
            continue
        try:
            if _started_with(proc / entry.name / "environ", marker) and _alive(pidfd):
                _stop(pid, pidfd)
                stopped.append(pid)
        finally:
            os.close(pidfd)
    return stopped


def _started_with(environ: Path, marker: bytes) -> bool:
    try:
        env = environ.read_bytes()
    except OSError:  # gone, or another user's
        return False
    return env.startswith(marker) or b"\0" + marker in env


def _alive(pidfd: int) -> bool:
    """A pidfd turns readable when its process exits: until then, its pid names it."""
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    return not poller.poll(0)


def _stop(pid: int, pidfd: int) -> None:
    try:
        if os.getpgid(pid) == pid:
            # a job is its group's leader; the group also holds children that cleared their
            # environment. A group's id is not given to a new process while the group has members.
            os.killpg(pid, signal.SIGKILL)
        signal.pidfd_send_signal(pidfd, signal.SIGKILL)
    except ProcessLookupError:  # it ended meanwhile
        pass
