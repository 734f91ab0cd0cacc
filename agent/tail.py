"""Reading what a job wrote: new bytes of its output log, and its progress file when changed.

Plain, small file operations (fstat, pread, stat) done on the event loop by the poll timer;
at most `max_chunk` bytes per job per call keep each turn short and memory bounded.
"""

from __future__ import annotations

import os

from job_cmd.progress import ProgressReport, read_progress

from agent.jobs import JobRecord


def read_new(job: JobRecord, max_chunk: int, limit: int | None = None) -> bytes:
    """Up to `max_chunk` bytes of the job's output log from `job.sent_offset` (not past
    `limit` when given); b"" when there is nothing new. Opens the log if it was closed."""
    if job.log_fd is None:
        if limit is not None and job.sent_offset >= limit:
            return b""
        try:
            job.log_fd = os.open(job.log_path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return b""
    size = os.fstat(job.log_fd).st_size
    if limit is not None:
        size = min(size, limit)
    if size <= job.sent_offset:
        return b""
    return os.pread(job.log_fd, min(max_chunk, size - job.sent_offset), job.sent_offset)


def log_size(job: JobRecord) -> int:
    if job.log_fd is not None:
        return os.fstat(job.log_fd).st_size
    try:
        return os.stat(job.log_path).st_size
    except FileNotFoundError:
        return 0


LAST_LINE_BYTES = 4096  # read from the end of a failed job's log for its last line
LAST_LINE_CHARS = 200  # of it kept in the reason


def last_output_line(log_path: str) -> str:
    """The last non-blank line of a log (what a failing program printed last: often why), as
    printable text of at most LAST_LINE_CHARS; "" when there is none or it cannot be read."""
    try:
        with open(log_path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - LAST_LINE_BYTES))
            tail = f.read(LAST_LINE_BYTES)
    except OSError:
        return ""
    for raw in reversed(tail.splitlines()):
        line = "".join(c if c.isprintable() else " " for c in raw.decode(errors="replace")).strip()
        if line:
            return line if len(line) <= LAST_LINE_CHARS else line[: LAST_LINE_CHARS - 1] + "…"
    return ""


def few_names(path: str, limit: int = 32) -> set[str] | None:
    """The names in a directory of at most `limit` entries; None for a bigger one (or one that
    cannot be read). At a job's end one look at its run dir says whether it left a progress
    file or a result: probing for each missing file cost a failed lookup each, three times the
    price of a look at a directory holding only output.log."""
    names: set[str] = set()
    try:
        with os.scandir(path) as entries:
            for entry in entries:
                names.add(entry.name)
                if len(names) > limit:
                    return None
    except OSError:
        return None
    return names


def read_progress_if_changed(job: JobRecord) -> ProgressReport | None:
    """The job's progress report if its file changed since the last call, else None."""
    try:
        st = os.stat(job.progress_path)
    except OSError:
        return None
    stamp = (st.st_ino, st.st_mtime_ns)  # atomic writers replace the file: a new inode
    if stamp == job.progress_stamp:
        return None
    job.progress_stamp = stamp
    return read_progress(job.progress_path)
