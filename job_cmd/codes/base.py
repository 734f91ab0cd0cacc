"""The interface of a code plugin, and the parameter checks codes share.

The checks live in `jobvisor.code_params` (the gateway runs them at submit too) and are
re-exported here, where plugins import them from."""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from jobvisor.code_params import check_env, check_string_list, reject_unknown, require_object
from jobvisor.reasons import MAX_REASON
from jobvisor.resources import Resources

from job_cmd import io
from job_cmd.fsutil import ERROR_FILE, META_DIR, OUTPUT_LOG, RESULT_FILE, read_json

__all__ = [
    "MAX_RESULT_BYTES",
    "Code",
    "Launch",
    "check_env",
    "check_string_list",
    "count_lines",
    "reject_unknown",
    "require_object",
]

MAX_RESULT_BYTES = 1024 * 1024  # a result travels in one status message; bigger belongs in a file


@dataclass(frozen=True, slots=True)
class Launch:
    """What the agent fork/execs, directly, in the run dir: `argv` with `env` added."""

    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)


class Code(ABC):
    """A kind of job. Instances are stateless; one is shared by every job of its code."""

    name: ClassVar[str]

    @abstractmethod
    def launch(self, params: Any, run_dir: Path, resources: Resources) -> Launch:
        """Validate `params` (raise `InvalidParams` naming the field) and say what to execute.

        May write files into `run_dir`, which exists when this is called."""

    def result(self, run_dir: Path) -> Any:
        """The job's result once it completed: the JSON in `.jobvisor/result.json`, or None.

        Raises ValueError if the file is not JSON or over `MAX_RESULT_BYTES`."""
        try:  # os.path, not pathlib: the agent asks this of thousands of short jobs a second
            return read_json(os.path.join(run_dir, META_DIR, RESULT_FILE), max_bytes=MAX_RESULT_BYTES)
        except FileNotFoundError:
            return None

    def failure(self, run_dir: Path) -> str | None:
        """Why the job failed, in its own words, when it exited non-zero: the reason in
        `.jobvisor/error.json` (a python job's exception), or None (its exit code then says it)."""
        try:
            data = read_json(os.path.join(run_dir, META_DIR, ERROR_FILE), max_bytes=64 * 1024)
        except (OSError, ValueError):
            return None
        reason = data.get("reason") if isinstance(data, dict) else None
        return reason[:MAX_REASON] if isinstance(reason, str) and reason.strip() else None

    def analyze(self, run_dir: Path, args: dict) -> dict:
        """A summary of a run's output files: their names and sizes, and output.log's lines."""
        files = io.list_files(run_dir, limit=10_000)
        return {
            "files": [{"path": f["path"], "size": f["size"]} for f in files],
            "total_bytes": sum(f["size"] for f in files),
            "log_lines": count_lines(Path(run_dir) / OUTPUT_LOG),
        }


def count_lines(path: Path) -> int:
    """Newlines in `path` (0 if it does not exist), read in chunks so big logs are fine."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return 0
    lines = 0
    try:
        while chunk := os.read(fd, 1 << 20):
            lines += chunk.count(b"\n")
    finally:
        os.close(fd)
    return lines
