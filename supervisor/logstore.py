"""Job output logs as the supervisor keeps them: one file per job in the state dir.

The run dir's output.log (on the compute side) is the truth; this is a replica fed by the
agent's LogChunks at explicit offsets, so a chunk sent twice (after a reconnect) is written
once and a restarted supervisor asks the agent to resend from the size it has.
All methods are blocking file I/O: the store calls them in a worker thread.
"""

from __future__ import annotations

import os
from pathlib import Path

from jobvisor.ids import JobId


RESTART_LOG = -1  # a chunk's offset that means: a new attempt, empty the log first


class LogStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def path(self, job_id: JobId) -> Path:
        return self.root / job_id[-2:] / f"{job_id}.log"

    def size(self, job_id: JobId) -> int:
        try:
            return self.path(job_id).stat().st_size
        except FileNotFoundError:
            return 0

    def write_batch(self, chunks: list[tuple[JobId, int, bytes]]) -> dict[JobId, int]:
        """Write chunks at their offsets; return each touched job's new size. A chunk past the
        end (a gap) is skipped: the agent resends from our size after its next hello. A chunk
        at RESTART_LOG empties the log (a new attempt's bytes follow)."""
        sizes: dict[JobId, int] = {}
        by_job: dict[JobId, list[tuple[int, bytes]]] = {}
        for job_id, offset, data in chunks:
            by_job.setdefault(job_id, []).append((offset, data))
        for job_id, parts in by_job.items():
            path = self.path(job_id)
            path.parent.mkdir(exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                size = os.fstat(fd).st_size
                for offset, data in parts:
                    if offset == RESTART_LOG:
                        os.ftruncate(fd, 0)
                        size = 0
                        continue
                    if offset > size:
                        continue
                    new = data[size - offset:]
                    if new:
                        os.pwrite(fd, new, size)
                        size += len(new)
                sizes[job_id] = size
            finally:
                os.close(fd)
        return sizes

    def read(self, job_id: JobId, offset: int, length: int) -> tuple[bytes, int]:
        """Bytes from `offset` (at most `length`) and the file's current size."""
        try:
            fd = os.open(self.path(job_id), os.O_RDONLY)
        except FileNotFoundError:
            return b"", 0
        try:
            size = os.fstat(fd).st_size
            return os.pread(fd, max(0, min(length, size - offset)), offset) if offset < size else b"", size
        finally:
            os.close(fd)
