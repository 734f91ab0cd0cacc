"""Small file helpers shared by job commands: atomic JSON writes and the run dir's layout."""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING

# No pathlib or typing at import time: every python job imports this module first thing
# (`job_cmd.pyrun`), and those two were a third of a no-op job's start-up.
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any

META_DIR = ".jobvisor"  # jobvisor's own files inside a run dir (status, params, result), made when needed
OUTPUT_LOG = "output.log"
RESULT_FILE = "result.json"  # in META_DIR: a job's JSON result
ERROR_FILE = "error.json"  # in META_DIR: why a job failed, in its own words ({"reason": ...})
# Beside META_DIR, not in it: a job (in any language) writes it at any time, so its directory
# must exist from the start, and making META_DIR for every job was one more inode per job.
PROGRESS_FILE = ".jobvisor-progress.json"


def meta_dir(run_dir: str | os.PathLike) -> Path:
    from pathlib import Path

    return Path(run_dir) / META_DIR


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    """Write `obj` as JSON to `path` so that readers see the old or the new file, never half.

    Raises TypeError/ValueError when `obj` is not JSON-serialisable (before touching the disk).
    """
    data = json.dumps(obj, separators=(",", ":"), allow_nan=False).encode()
    path = os.fspath(path)
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)
    os.replace(tmp, path)


def read_json(path: str | os.PathLike, max_bytes: int | None = None) -> Any:
    """The JSON in `path`; FileNotFoundError if it is missing, ValueError if it is not JSON or
    larger than `max_bytes`."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)  # a missing file: one syscall, no file object
    with open(fd, "rb") as fh:
        if max_bytes is not None:
            size = os.fstat(fd).st_size
            if size > max_bytes:
                raise ValueError(f"{os.path.basename(os.fspath(path))} is {size} bytes, over the limit of {max_bytes}")
        return json.loads(fh.read())
