"""Uploaded job inputs, kept in the state dir (never in memory) until their jobs end.

A multipart submit's files arrive first, in slices (`UploadInput`), under
`inputs/uploads/OWNER/UPLOAD/`; the submit that names the upload then makes them each job's
own under `inputs/jobs/JOB/` (moved for the first job, hard-linked for the others). A job's
inputs are listed in its spec (path and size), so a restarted supervisor sends them again from
the same files, and a resubmit links them into the new job's. They stay `[supervisor]
keep_inputs_days` after the job ends, then are pruned (hourly and at start, by the jobs' ends
as the database has them; also uploads no submit claimed). Every file operation runs in a
worker thread: the event loop never waits on the disk.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import re
import shutil
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path

from jobvisor.errors import InvalidRequest, TooLarge
from jobvisor.ids import JobId, UserId
from jobvisor.input_paths import check_input_path
from jobvisor.codec import Message
from jobvisor.protocol.agent_wire import InputChunk, InputFile, RunJob

log = logging.getLogger(__name__)

UPLOAD_ID = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
STALE_UPLOAD = 3600.0  # seconds: an upload no submit claimed by then is pruned
PRUNE_INTERVAL = 3600.0  # seconds between two prunings, at most
FILE_MODE = 0o700  # an input may be a script the job runs (./sim.sh)
MAX_TRACKED = 10_000  # uploads in progress whose size is counted


class InputStore:
    def __init__(self, root: Path, max_upload_bytes: int) -> None:
        self.root = root
        self.uploads = root / "uploads"
        self.jobs = root / "jobs"
        self.max_upload_bytes = max_upload_bytes
        # bytes received per upload in progress; a form refused halfway is never claimed, so the
        # oldest entries go beyond MAX_TRACKED (their files are swept at the next start)
        self._sizes: OrderedDict[tuple[UserId, str], int] = OrderedDict()

    def job_dir(self, job_id: JobId) -> Path:
        return self.jobs / job_id

    def stored(self, job_id: JobId, path: str) -> Path:
        """Where the supervisor keeps one input of a job."""
        return self.jobs / job_id / path

    # ------------------------------------------------------------------ uploads

    def _upload_dir(self, owner: UserId, upload_id: str) -> Path:
        if not isinstance(upload_id, str) or not UPLOAD_ID.match(upload_id):
            raise InvalidRequest("upload_id must be 8 to 64 letters, digits, '-' or '_'", field="upload_id")
        return self.uploads / owner / upload_id

    async def append(self, owner: UserId, upload_id: str, path: str, offset: int, data: bytes) -> int:
        """Bytes `offset`.. of one uploaded file; the file's size so far."""
        where = self._upload_dir(owner, upload_id)
        name = check_input_path(path, field="path")
        if not isinstance(offset, int) or offset < 0:
            raise InvalidRequest("offset must be a whole number >= 0", field="offset")
        key = (owner, upload_id)
        total = self._sizes.get(key, 0) + len(data)
        if total > self.max_upload_bytes:
            self._sizes.pop(key, None)
            await asyncio.to_thread(shutil.rmtree, where, True)
            raise TooLarge(f"the inputs are over gateway.max_input_bytes ({self.max_upload_bytes} bytes)")
        self._sizes[key] = total
        if len(self._sizes) > MAX_TRACKED:
            self._sizes.popitem(last=False)
        return await asyncio.to_thread(_write_slice, where / name, offset, data)

    async def claim(self, owner: UserId, upload_id: str, job_ids: list[JobId]) -> list[list]:
        """The upload's files become each job's inputs; their [path, size] list, sorted."""
        where = self._upload_dir(owner, upload_id)
        self._sizes.pop((owner, upload_id), None)
        listing = await asyncio.to_thread(_claim, where, [self.job_dir(j) for j in job_ids])
        if listing is None:
            raise InvalidRequest(f"no upload {upload_id!r} (its files never arrived, or it was used)", field="upload_id")
        return listing

    async def keep(self, job_id: JobId, path: str, offset: int, data: bytes) -> int:
        """Bytes `offset`.. of one input of `job_id` made here (a workflow's file fetched from
        another job); the file's size so far."""
        return await asyncio.to_thread(_write_slice, self.stored(job_id, check_input_path(path, field="path")), offset, data)

    async def link(self, source: JobId, listing: list, job_ids: list[JobId]) -> list[list] | None:
        """The inputs of job `source` (its `listing`) become each of `job_ids`' own (a
        resubmit); their [path, size] list, or None when they are no longer all kept."""
        return await asyncio.to_thread(_link_listing, self.job_dir(source), listing, [self.job_dir(j) for j in job_ids])

    # ------------------------------------------------------------------ ends

    def discard(self, job_ids: Iterable[JobId]) -> None:
        """Delete ended jobs' inputs, in a worker thread (nothing waits for it)."""
        dirs = [self.job_dir(j) for j in job_ids]
        if dirs:
            asyncio.get_running_loop().run_in_executor(None, _remove_all, dirs)

    async def prune(self, keep_seconds: float, ends_of: Callable[[list[JobId]], Awaitable[dict]]) -> int:
        """Delete the inputs of jobs that ended more than `keep_seconds` ago (`ends_of`: the
        store's answer, when each job ended or None), of jobs with no row (a submit refused
        after its upload was claimed, a deleted job) once stale, and stale unclaimed uploads.
        A dir whose job is unfinished, or ended but not yet committed, is kept."""
        now = time.time()
        found = await asyncio.to_thread(_job_dirs, self.jobs)
        ends = await ends_of(list(found)) if found else {}
        doomed = [self.job_dir(job_id) for job_id, mtime in found.items()
                  if (job_id in ends and ends[job_id] is not None and ends[job_id] < now - keep_seconds)
                  or (job_id not in ends and mtime < now - STALE_UPLOAD)]
        removed = await asyncio.to_thread(_remove_all, doomed)
        removed += await asyncio.to_thread(_prune_uploads, self.uploads, now - STALE_UPLOAD)
        if removed:
            log.info("pruned %d input directories (of jobs ended over %.4g days ago, or never submitted)",
                     removed, keep_seconds / 86400)
        return removed

    async def prune_loop(self, keep_seconds: float, ends_of: Callable[[list[JobId]], Awaitable[dict]]) -> None:
        """Prune now and then for as long as the supervisor runs (a tenth of the keeping
        time apart, between a second and PRUNE_INTERVAL), logging what fails and going on.
        The start pruned already: the first turn waits."""
        interval = min(PRUNE_INTERVAL, max(1.0, keep_seconds / 10))
        while True:
            await asyncio.sleep(interval)
            try:
                await self.prune(keep_seconds, ends_of)
            except Exception as exc:  # a database that cannot be read, a full disk: next time
                log.warning("pruning job inputs failed (%s); trying again in %.0f s", exc, interval)


def _write_slice(path: Path, offset: int, data: bytes) -> int:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | (os.O_TRUNC if offset == 0 else 0)
    fd = os.open(path, flags, FILE_MODE)
    try:
        size = os.fstat(fd).st_size
        if offset != size:
            raise InvalidRequest(f"slice of {path.name!r} at offset {offset}, but {size} bytes arrived", field="offset")
        view = memoryview(data)
        while view:
            written = os.pwrite(fd, view, offset)
            view, offset = view[written:], offset + written
        return offset
    finally:
        os.close(fd)


def _listing(root: Path) -> list[list]:
    out = []
    for dirpath, _, files in os.walk(root):
        for name in files:
            full = Path(dirpath) / name
            out.append([full.relative_to(root).as_posix(), full.stat().st_size])
    return sorted(out)


def _claim(upload: Path, job_dirs: list[Path]) -> list[list] | None:
    if not upload.is_dir():
        return None
    listing = _listing(upload)
    paths = [path for path, _ in listing]
    for job_dir in job_dirs[1:]:
        _link_files(upload, paths, job_dir)
    job_dirs[0].parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.replace(upload, job_dirs[0])
    return listing


def _link_files(source: Path, paths: list[str], target: Path) -> None:
    """Each of `paths` under `source` made the same file under `target`: a hard link (no bytes
    copied, and an input's later edit is impossible since nobody writes to it), else a copy."""
    for path in paths:
        made = target / path
        made.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            os.link(source / path, made)
        except FileExistsError:
            continue  # linked by an earlier try that stopped halfway
        except OSError:
            shutil.copyfile(source / path, made)
            os.chmod(made, FILE_MODE)


def _link_listing(source: Path, listing: list, job_dirs: list[Path]) -> list[list] | None:
    paths = [path for path, _ in listing]
    try:
        for job_dir in job_dirs:
            _link_files(source, paths, job_dir)
        return [[path, (job_dirs[0] / path).stat().st_size] for path in paths] if job_dirs else listing
    except FileNotFoundError:  # pruned: none of the new jobs keeps a part of them
        _remove_all(job_dirs)
        return None


def _remove_all(dirs: list[Path]) -> int:
    removed = 0
    for path in dirs:
        if path.exists():
            shutil.rmtree(path, ignore_errors=True)
            removed += 1
    return removed


def _job_dirs(jobs: Path) -> dict[JobId, float]:
    """The job dirs of the store and their mtimes."""
    if not jobs.is_dir():
        return {}
    found = {}
    for entry in os.scandir(jobs):
        try:
            found[JobId(entry.name)] = entry.stat().st_mtime
        except FileNotFoundError:
            continue
    return found


def _prune_uploads(uploads: Path, stale_before: float) -> int:
    removed = 0
    if uploads.is_dir():
        for owner in os.scandir(uploads):
            for upload in os.scandir(owner.path):
                try:
                    stale = upload.stat().st_mtime < stale_before
                except FileNotFoundError:
                    continue  # claimed meanwhile
                if stale:
                    shutil.rmtree(upload.path, ignore_errors=True)
                    removed += 1
    return removed

# the spec's extra field of the inputs a job's run takes by path (a workflow job's files of the
# jobs it depends on, on the same target): [[path in the run dir, source path], ...]
LINKED_INPUTS = "linked_inputs"


def linked_inputs(files: list[InputFile]) -> list[list[str]]:
    """`files` (placed from a path) as the spec keeps them."""
    return [[f.path, f.source] for f in files if f.source is not None]


def linked_of(extra: dict) -> list[InputFile] | None:
    """The inputs the spec's extra says the run places by path; None when it says nothing."""
    kept = extra.get(LINKED_INPUTS)
    return None if kept is None else [InputFile(path, source=source) for path, source in kept]


def inputs_gone(job_id: JobId, listing: list, keep_days: float) -> str:
    """Why a resubmit of `job_id` cannot have its inputs, naming them and the setting."""
    names = ", ".join(path for path, _size in listing[:5]) + (" ..." if len(listing) > 5 else "")
    kept = (f"they stay {keep_days:g} days after their job ends" if keep_days
            else "they are deleted when their job ends")
    return (f"the inputs job {job_id} ran with ({names}) are no longer kept ({kept}: [supervisor] "
            f"keep_inputs_days): submit it again with its --input files")


# ---------------------------------------------------------------------- a run's inputs


def source_inputs(store: InputStore, job_id: JobId, listing: list, source_of) -> list[InputFile] | None:
    """The inputs as paths the agent reads itself (`source_of(stored path)`: the driver's
    answer), or None when the driver's agents cannot see this machine's files."""
    inputs = []
    for path, _ in listing:
        source = source_of(store.stored(job_id, path))
        if source is None:
            return None
        inputs.append(InputFile(path, source=source))
    return inputs


def read_inputs(store: InputStore, run: RunJob, listing: list, max_message_bytes: int) -> list[Message]:
    """`run` with its uploaded inputs' bytes added (run in a worker thread): files that fit in a quarter of a
    message ride in the run, bigger ones go ahead of it in `InputChunk`s of that size. A file
    that cannot be read is named without bytes, and the agent fails the job saying it did not
    arrive (the supervisor's log says why)."""
    budget = slice_size = max(1, max_message_bytes // 4)
    ahead: list[Message] = []
    inputs: list[InputFile] = []
    for path, size in listing:
        stored = store.stored(run.job_id, path)
        first = len(ahead)
        try:
            if size <= budget:
                inputs.append(InputFile(path, data=stored.read_bytes()))
                budget -= size
                continue
            with open(stored, "rb") as f:
                offset = 0
                while True:
                    data = f.read(slice_size)
                    if not data and offset:
                        break
                    ahead.append(InputChunk(run.job_id, run.attempt, run.run_dir, path, offset, data))
                    offset += len(data)
                    if len(data) < slice_size:
                        break
        except OSError as exc:
            log.error("job %s: cannot read its input %r (%s): it will fail", run.job_id, path, exc)
            del ahead[first:]  # no half file
        inputs.append(InputFile(path))
    return ahead + [dataclasses.replace(run, inputs=[*run.inputs, *inputs])]
