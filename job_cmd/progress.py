"""Progress reports from inside a job.

A job (in any language) reports progress by atomically writing
`{"fraction": 0.0..1.0, "message": "...", "at": unix_time}` to the file named by the
environment variable `JOBVISOR_PROGRESS_FILE`; the agent polls that file and forwards changes.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass

from jobvisor import env_names

from job_cmd.fsutil import read_json, write_json_atomic

ENV_VAR = env_names.PROGRESS_FILE
MAX_MESSAGE_CHARS = 1000
_MAX_FILE_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class ProgressReport:
    fraction: float
    message: str
    at: float


def report(fraction: float, message: str = "") -> None:
    """Record the job's progress; a no-op outside jobvisor (the variable is unset)."""
    path = os.environ.get(ENV_VAR)
    if not path:
        return
    fraction = float(fraction)
    fraction = 0.0 if math.isnan(fraction) else min(1.0, max(0.0, fraction))
    write_json_atomic(path, {"fraction": fraction, "message": str(message)[:MAX_MESSAGE_CHARS], "at": time.time()})


def read_progress(path: str | os.PathLike) -> ProgressReport | None:
    """The report in `path`, or None if it is missing or not a valid report."""
    try:
        data = read_json(path, max_bytes=_MAX_FILE_BYTES)
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    fraction = data.get("fraction")
    if not isinstance(fraction, (int, float)) or isinstance(fraction, bool) or math.isnan(fraction):
        return None
    at = data.get("at", 0.0)
    return ProgressReport(
        fraction=min(1.0, max(0.0, float(fraction))),
        message=str(data.get("message", ""))[:MAX_MESSAGE_CHARS],
        at=float(at) if isinstance(at, (int, float)) and not isinstance(at, bool) else 0.0,
    )
