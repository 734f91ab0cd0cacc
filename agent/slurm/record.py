"""The Slurm side of a job's record, and its file in the run dir (`.jobvisor/slurm.json`):
written before `sbatch` runs and after every change, it is how a restarted agent finds its
Slurm jobs again without ever submitting one twice."""

from __future__ import annotations

import enum
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from jobvisor.states import JobState

from job_cmd.fsutil import META_DIR, read_json, write_json_atomic

from agent.jobs import JobRecord

logger = logging.getLogger(__name__)

SLURM_FILE = "slurm.json"


class Submit(enum.StrEnum):
    WAITING = "waiting"        # in the agent's queue (the per-user cap on queued Slurm jobs)
    SUBMITTING = "submitting"  # `sbatch` was started; its answer is not known yet
    SUBMITTED = "submitted"    # Slurm gave it an id


@dataclass(eq=False)
class SlurmJob:
    """The Slurm side of a job's record (`job`): kept by the Slurm backend beside the core's
    record, for as long as the core keeps the job."""

    job: JobRecord
    submit: Submit = Submit.WAITING
    slurm_job_id: str = ""
    slurm_state: str = ""
    slurm_reason: str = ""
    slurm_node: str = ""
    cancel_requested: bool = False  # scancel is wanted (or was sent)
    forgotten: bool = False  # the supervisor has its terminal state: a restart ignores this job
    submitted_at: float | None = None

    @property
    def slurm_path(self) -> Path:
        return self.job.run_dir / META_DIR / SLURM_FILE

    def info(self) -> dict:
        info: dict = {"slurm_job_id": self.slurm_job_id or None, "slurm_state": self.slurm_state or None,
                      "slurm_reason": self.slurm_reason or None}
        if self.slurm_node:
            info["slurm_node"] = self.slurm_node
        return info

    # ------------------------------------------------------------------ the file

    def to_file(self) -> dict:
        job = self.job
        return {
            "job_id": job.job_id, "attempt": job.attempt, "code": job.code, "state": str(job.state),
            "reason": job.reason, "exit_code": job.exit_code, "submit": str(self.submit),
            "slurm_job_id": self.slurm_job_id, "slurm_state": self.slurm_state,
            "slurm_reason": self.slurm_reason, "slurm_node": self.slurm_node,
            "cancel_requested": self.cancel_requested, "forgotten": self.forgotten,
            "submitted_at": self.submitted_at, "started_at": job.started_at,
            "finished_at": job.finished_at, "changed_at": job.changed_at,
        }

    def save(self) -> None:
        write_json_atomic(self.slurm_path, self.to_file())

    @classmethod
    def load(cls, run_dir: Path) -> "SlurmJob | None":
        """The job recorded in `run_dir` (its record without a phase yet), or None when there
        is none or it is unreadable."""
        try:
            data = read_json(run_dir / META_DIR / SLURM_FILE, max_bytes=256 * 1024)
            job = JobRecord(job_id=str(data["job_id"]), attempt=int(data["attempt"]), code=str(data.get("code", "")),
                            run_dir=run_dir)
            job.state = JobState(data.get("state", "starting"))
            job.reason = str(data.get("reason") or "")
            job.exit_code = data.get("exit_code")
            job.started_at = data.get("started_at")
            job.finished_at = data.get("finished_at")
            job.changed_at = float(data.get("changed_at") or job.changed_at)
            job.status_written = True  # read from it
            side = cls(job, submit=Submit(data.get("submit", "waiting")))
            for name in ("slurm_job_id", "slurm_state", "slurm_reason", "slurm_node"):
                setattr(side, name, str(data.get(name) or ""))
            side.cancel_requested = bool(data.get("cancel_requested"))
            side.forgotten = bool(data.get("forgotten"))
            side.submitted_at = data.get("submitted_at")
            return side
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            logger.warning("cannot read %s: %s", run_dir / META_DIR / SLURM_FILE, exc)
            return None


def scan(run_root: Path, limit: int = 100_000) -> list[SlurmJob]:
    """Jobs of earlier agents under `run_root` (one run dir per job) that the supervisor may
    still want: every one not marked forgotten."""
    found: list[SlurmJob] = []
    try:
        entries = os.scandir(run_root)
    except FileNotFoundError:
        return found
    with entries:
        for entry in entries:
            if len(found) >= limit:
                break
            if not entry.is_dir(follow_symlinks=False):
                continue
            side = SlurmJob.load(Path(entry.path))
            if side is not None and not side.forgotten:
                found.append(side)
    return found
