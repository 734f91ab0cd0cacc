"""What the agent's core needs of whatever runs its jobs, and what it offers back.

One core (`agent.core.AgentCore`) makes every decision about the job table: messages, the
send-ahead FIFO, log shipping, Hellos, forgetting. What differs between running a job as a
child process (`agent.local.LocalBackend`) and submitting it to Slurm
(`agent.slurm.backend.SlurmBackend`) sits behind `JobBackend`: make the run dir, launch, stop,
say what the report carries. A backend tells the core about its jobs only through `CoreEvents`,
the core's public methods; neither calls the other's private ones, and neither subclasses the
other. Both sides are synchronous: a backend's own loop (the runner's pidfds, Slurm's poll)
does the awaiting and calls back here.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from jobvisor.protocol.agent_wire import RunJob
from jobvisor.resources import Resources
from jobvisor.states import JobState

from job_cmd.codes.base import Launch

from agent.jobs import Ending, JobRecord


class Handle(Protocol):
    def cancel(self) -> None: ...


class CoreEvents(Protocol):
    """The core's side, as a backend sees it (`AgentCore` implements it)."""

    agent_id: str

    def slot_freed(self) -> None:
        """A started job ended: its slot passes to the oldest prefetched job."""

    def running(self, job: JobRecord, reason: str = "", now: float | None = None) -> None:
        """The job's program runs (or has run): state `running`, reported."""

    def update(self, job: JobRecord) -> None:
        """Something the report carries changed (its backend's info, its reason): report it."""

    def conclude(self, job: JobRecord, state: JobState, reason: str, returncode: int | None,
                 quiet: bool = False, names: set[str] | None = None) -> None:
        """The attempt is over: record it, write its status, report it (or drop it)."""

    def fail_to_start(self, job: JobRecord, reason: str) -> None:
        """The job could not be started: it fails with `reason`."""

    def prepare_failed(self, job: JobRecord, exc: Exception) -> None:
        """Its launch could not be prepared (called from an except block): it fails."""

    def write_status(self, job: JobRecord) -> None:
        """Write its status file (a failure is logged, never raised)."""

    def poll_progress(self, job: JobRecord) -> None:
        """Report its progress file if it changed."""


class JobBackend(Protocol):
    """How jobs run. `holds_slots`: runs sent ahead wait in the core for a slot (a local
    agent); False: the backend queues runs itself (Slurm) and a run sent ahead starts at once.
    `acks_runs`: a new run is acknowledged at once (its first report may be long in coming)."""

    holds_slots: bool
    acks_runs: bool
    still_there: str  # how a live earlier attempt is described: "still running on agent {agent}"

    def bind(self, core: CoreEvents) -> None:
        """The core to call back (made after the backend)."""

    def new_record(self, msg: RunJob) -> JobRecord:
        """The record of a run about to start (its run dir as the backend sees it)."""

    def replace_live(self, existing: JobRecord) -> bool:
        """A new attempt arrives while `existing` (an earlier one) is live: True when the backend
        let it go (the supervisor had given it up) and the new one may run, False to refuse."""

    def prepare_ahead(self, run_dir: Path) -> Any:
        """Start making the run dir of a job that starts later; a token for prepare_run_dir."""

    def prepare_run_dir(self, job: JobRecord, ahead: Any = None) -> None:
        """Make the run dir (or finish what prepare_ahead began); OSError if it cannot."""

    def launch(self, job: JobRecord, launch: Launch, env: dict[str, str], resources: Resources) -> None:
        """Start the prepared job: its phase becomes Spawning/Running (local) or Delegated
        (Slurm). Failures go to CoreEvents.fail_to_start / prepare_failed, never raised."""

    def stop(self, job: JobRecord, ending: Ending) -> None:
        """Stop a live job whose end is now decided (`job.live.ending` is set): the end
        comes back through CoreEvents.conclude, now or later."""

    def info(self, job: JobRecord) -> dict:
        """What the job's report carries of its backend (pid, Slurm ids)."""

    def write_status(self, job: JobRecord) -> None:
        """Write the job's status file(s); OSError when it cannot."""

    def log_size(self, job: JobRecord) -> int: ...

    def dropped(self, job: JobRecord) -> None:
        """The core forgets the job (the supervisor has its end, or gave it up)."""

    def call_later(self, delay: float, callback: Callable[[], None]) -> Handle: ...

    def kill_all(self, jobs: list[JobRecord]) -> None:
        """At the agent's exit: stop every live job at once (last resort)."""
