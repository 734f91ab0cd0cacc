"""Every Slurm job state, mapped to a jobvisor job state (pure; unit-tested for the states a
single-node test cluster cannot produce)."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from jobvisor.reasons import OUT_OF_MEMORY
from jobvisor.states import JobState


class Phase(enum.Enum):
    PENDING = "pending"    # not started yet: the job stays `starting`
    RUNNING = "running"    # has (or had) an allocation and is not over
    ENDED = "ended"        # terminal in Slurm


@dataclass(frozen=True)
class Mapped:
    phase: Phase
    state: JobState  # for ENDED: the terminal state; else STARTING or RUNNING
    reason: str = ""  # for ENDED: why, in words (Slurm's own reason is added by the caller)


_PENDING = {
    "PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD",
}
_RUNNING = {
    "RUNNING", "COMPLETING", "SUSPENDED", "STOPPED", "RESIZING", "SIGNALING", "STAGE_OUT", "POWER_UP_NODE",
    "UPDATE_DB",
}
_ENDED: dict[str, tuple[JobState, str]] = {
    "COMPLETED": (JobState.COMPLETED, ""),
    "FAILED": (JobState.FAILED, "failed"),
    "CANCELLED": (JobState.CANCELED, "canceled in Slurm"),
    "TIMEOUT": (JobState.TIMED_OUT, "walltime exceeded"),
    "DEADLINE": (JobState.TIMED_OUT, "deadline reached before the job could finish"),
    "OUT_OF_MEMORY": (JobState.FAILED, OUT_OF_MEMORY),
    "NODE_FAIL": (JobState.LOST, "a node of the job failed"),
    "BOOT_FAIL": (JobState.LOST, "a node of the job failed to boot"),
    "PREEMPTED": (JobState.LOST, "preempted by a higher-priority job"),
    "REVOKED": (JobState.LOST, "revoked (the job runs on another cluster of the federation)"),
    "SPECIAL_EXIT": (JobState.FAILED, "special exit (held by Slurm after a failure)"),
}


def normalize(raw: str) -> str:
    """'CANCELLED by 1001' -> 'CANCELLED'; 'cancelled+' -> 'CANCELLED'."""
    word = (raw or "").strip().split(" ", 1)[0].rstrip("+").upper()
    return word


def map_state(raw: str) -> Mapped | None:
    """The jobvisor meaning of a Slurm state, or None for a state this code does not know."""
    state = normalize(raw)
    if state in _PENDING:
        return Mapped(Phase.PENDING, JobState.STARTING)
    if state in _RUNNING:
        return Mapped(Phase.RUNNING, JobState.RUNNING)
    ended = _ENDED.get(state)
    if ended is not None:
        return Mapped(Phase.ENDED, ended[0], ended[1])
    return None


def parse_exit_code(text: str) -> tuple[int | None, int | None]:
    """Slurm's 'EXIT:SIGNAL' ('0:0', '1:0', '0:15') -> (exit code, signal), None when unknown."""
    code, _, sig = (text or "").strip().partition(":")
    try:
        return int(code), (int(sig) if sig else 0)
    except ValueError:
        return None, None


def returncode_of(exit_code: int | None, sig: int | None) -> int | None:
    """Popen's convention: the exit code, or minus the signal that killed the script."""
    if sig:
        return -sig
    return exit_code
