"""The job's status file, `run_dir/.jobvisor/status.json`, written atomically by the agent once
a job has run for a moment (`agent.local.STATUS_FILE_DELAY`) and at its end, so that a restarted
agent (or an sbatch job's epilogue) can recover the truth from disk. A job that ends within
that moment has none: its end went straight to the supervisor."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

from job_cmd.fsutil import META_DIR, read_json, write_json_atomic

STATUS_FILE = "status.json"


@dataclass(frozen=True, slots=True)
class JobStatus:
    job_id: str
    attempt: int
    state: str
    reason: str = ""
    pid: int | None = None
    exit_code: int | None = None
    started_at: float | None = None
    finished_at: float | None = None
    log_size: int = 0


def status_path(run_dir: str | os.PathLike) -> Path:
    return Path(run_dir) / META_DIR / STATUS_FILE


def write_status(run_dir: str | os.PathLike, status: JobStatus) -> None:
    path = status_path(run_dir)
    try:
        write_json_atomic(path, dataclasses.asdict(status))
    except FileNotFoundError:  # the first status of this run dir: make its .jobvisor/
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_json_atomic(path, dataclasses.asdict(status))


def read_status(run_dir: str | os.PathLike) -> JobStatus | None:
    """The status on disk, or None if there is none (or it is unreadable)."""
    try:
        data = read_json(status_path(run_dir), max_bytes=1024 * 1024)
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    names = {f.name for f in dataclasses.fields(JobStatus)}
    try:
        return JobStatus(**{k: v for k, v in data.items() if k in names})
    except TypeError:
        return None
