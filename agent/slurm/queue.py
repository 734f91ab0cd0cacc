"""SlurmQueue: the Slurm backend's file work and the one loop that talks to Slurm.

Each turn: submit queued jobs while the user has fewer than `max_queued` jobs in Slurm's
queue, send wanted cancels, and, once per poll interval, look at every job of this agent with
ONE `squeue` call (right after a submit or cancel a few polls come sooner: 0.3, 0.6, 1.2 s...). Jobs that squeue shows as over (or no longer shows) get their exit code from
the file the batch script leaves in the run dir, else from `scontrol`/`sacct`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from job_cmd.fsutil import META_DIR
from job_cmd.status_file import write_status

from agent.slurm import script as batch
from agent.slurm.commands import QueueEntry, Slurm, SlurmCommandError
from agent.jobs import JobRecord
from agent.slurm.record import SlurmJob, Submit
from agent.slurm.states import Phase, map_state, parse_exit_code, returncode_of

if TYPE_CHECKING:
    from agent.slurm.backend import SlurmBackend

logger = logging.getLogger(__name__)

SOON = 0.3  # seconds to the first poll after a submit or a cancel (then twice that, ...)


def read_exit_file(side: SlurmJob) -> int | None:
    try:
        text = (side.job.run_dir / META_DIR / batch.EXIT_CODE_FILE).read_text().strip()
        return int(text)
    except (OSError, ValueError):
        return None


class SlurmQueue:
    def __init__(self, loop: asyncio.AbstractEventLoop, slurm: Slurm, *, poll_interval: float, max_queued: int) -> None:
        self.loop = loop
        self.slurm = slurm
        self.poll_interval = max(0.1, poll_interval)
        self.max_queued = max(1, max_queued)
        self.backend: SlurmBackend | None = None  # set by the backend it serves
        self._waiting: deque[SlurmJob] = deque()
        self._resolve: list[SlurmJob] = []  # SUBMITTING when an earlier agent stopped
        self._wake = asyncio.Event()
        self._next_poll = 0.0
        self._fast_until = 0.0
        self._fast_step = SOON
        self._task: asyncio.Task | None = None
        self._cancels_sent: set[str] = set()
        self.polls = 0  # squeue calls made (tests check one per interval)

    # ------------------------------------------------------------------ files and timers

    def prepare_run_dir(self, run_dir: Path) -> None:
        os.makedirs(run_dir / META_DIR, mode=0o700, exist_ok=True)

    def call_later(self, delay: float, callback: Callable[[], None]) -> asyncio.TimerHandle:
        return self.loop.call_later(delay, callback)

    def write_status(self, side: SlurmJob) -> None:
        write_status(side.job.run_dir, side.job.status())
        side.save()

    def kill_all(self, sides: list[SlurmJob]) -> None:
        """At the agent's exit: scancel what is in Slurm (fire and forget; we are leaving)."""
        ids = [side.slurm_job_id for side in sides if side.slurm_job_id]
        if ids:
            try:
                subprocess.Popen(["scancel", *ids], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL, start_new_session=True, env=self.slurm.env)
            except OSError as exc:
                logger.warning("cannot scancel %s: %s", ",".join(ids), exc)

    # ------------------------------------------------------------------ from the backend

    def write_script(self, job: JobRecord, text: str) -> None:
        path = job.run_dir / META_DIR / batch.SCRIPT_FILE
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o700)
        try:
            os.write(fd, text.encode())
        finally:
            os.close(fd)
        os.replace(tmp, path)

    def enqueue(self, side: SlurmJob) -> None:
        self._waiting.append(side)
        self.wake()

    def unqueue(self, side: SlurmJob) -> None:
        try:
            self._waiting.remove(side)
        except ValueError:
            pass

    def adopt(self, side: SlurmJob) -> None:
        """A job an earlier agent left unfinished (see SlurmBackend.recover)."""
        if side.submit is Submit.WAITING:
            self._waiting.append(side)
        elif side.submit is Submit.SUBMITTING:
            self._resolve.append(side)
        self.wake()

    def cancel_detached(self, side: SlurmJob) -> None:
        """scancel a job the agent no longer tracks (an attempt the supervisor gave up on)."""
        self.unqueue(side)
        if side.slurm_job_id and side.slurm_job_id not in self._cancels_sent:
            self._cancels_sent.add(side.slurm_job_id)
            task = self.loop.create_task(self._cancel_quietly(side))
            task.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def _cancel_quietly(self, side: SlurmJob) -> None:
        try:
            await self.slurm.cancel(side.slurm_job_id)
        except SlurmCommandError as exc:
            logger.warning("job %s attempt %d: scancel %s failed: %s", side.job.job_id, side.job.attempt,
                           side.slurm_job_id, exc)

    def wake(self) -> None:
        self._wake.set()

    # ------------------------------------------------------------------ the loop

    def start(self) -> None:
        self._task = self.loop.create_task(self._run(), name="slurm-queue")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            try:
                await self.turn()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("slurm queue: a turn failed")
            delay = max(0.0, self._next_poll - self.loop.time())
            try:
                await asyncio.wait_for(self._wake.wait(), delay)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()

    def _jobs(self) -> list[SlurmJob]:
        return list(self.backend.sides.values())

    async def turn(self) -> None:
        for side in self._resolve[:]:
            self._resolve.remove(side)
            await self._resolve_submission(side)
        await self._submit_waiting()
        await self._send_cancels()
        now = self.loop.time()
        if now >= self._next_poll:
            if now < self._fast_until:  # just after a submit or cancel: 0.3, 0.6, 1.2 s, ... apart
                self._fast_step = min(self._fast_step * 2, self.poll_interval)
                self._next_poll = now + self._fast_step
            else:
                self._next_poll = now + self.poll_interval
            await self.poll()

    def _poll_soon(self) -> None:
        """Slurm starts a job on an idle cluster within a second or so: look sooner than the
        poll interval for a little while (still one squeue for all jobs each time)."""
        now = self.loop.time()
        self._fast_step = SOON / 2
        self._fast_until = now + self.poll_interval
        self._next_poll = min(self._next_poll, now + min(SOON, self.poll_interval))

    async def _resolve_submission(self, side: SlurmJob) -> None:
        name = batch.job_name(side.job.job_id, side.job.attempt)
        try:
            found = await self.slurm.find_by_name(name)
        except SlurmCommandError as exc:
            logger.warning("job %s: cannot look up Slurm job %s: %s", side.job.job_id, name, exc)
            found = None
        if found:
            self.backend.on_submitted(side, found)
        else:
            self.backend.on_submit_failed(side, "the agent stopped while submitting it and Slurm does not know it; "
                                               "it was not submitted again, to be safe")

    async def _submit_waiting(self) -> None:
        in_queue = sum(1 for s in self._jobs() if s.submit is not Submit.WAITING and not s.job.is_terminal)
        while self._waiting:
            side = self._waiting[0]
            job = side.job
            if job.is_terminal or side.submit is not Submit.WAITING:
                self._waiting.popleft()
                continue
            if in_queue >= self.max_queued:
                why = f"jobvisor: {in_queue} of your jobs are in the Slurm queue, the most allowed at once"
                for waiting in self._waiting:
                    self.backend.on_waiting(waiting, why)
                return
            self._waiting.popleft()
            self.backend.on_submitting(side)
            try:
                slurm_job_id = await self.slurm.submit(str(job.run_dir / META_DIR / batch.SCRIPT_FILE))
            except SlurmCommandError as exc:
                logger.warning("job %s attempt %d: sbatch refused it: %s", job.job_id, job.attempt, exc)
                self.backend.on_submit_failed(side, str(exc))
                continue
            in_queue += 1
            self.backend.on_submitted(side, slurm_job_id)
            self._poll_soon()

    async def _send_cancels(self) -> None:
        for side in self._jobs():
            if (side.cancel_requested and side.slurm_job_id and not side.job.is_terminal
                    and side.slurm_job_id not in self._cancels_sent):
                self._cancels_sent.add(side.slurm_job_id)
                try:
                    await self.slurm.cancel(side.slurm_job_id)
                except SlurmCommandError as exc:
                    logger.warning("job %s: scancel %s failed: %s", side.job.job_id, side.slurm_job_id, exc)
                self._poll_soon()

    async def poll(self) -> None:
        """One squeue call for every job of this agent that is in Slurm."""
        sides = [s for s in self._jobs() if s.submit is Submit.SUBMITTED and not s.job.is_terminal]
        if not sides:
            return
        self.polls += 1
        try:
            entries = await self.slurm.queue([s.slurm_job_id for s in sides])
        except SlurmCommandError as exc:
            logger.warning("squeue failed: %s", exc)
            return
        for side in sides:
            if side.job.is_terminal:
                continue
            entry = entries.get(side.slurm_job_id)
            mapped = map_state(entry.state) if entry is not None else None
            if entry is None or (mapped is not None and mapped.phase is Phase.ENDED):
                await self._final(side, entry)
            else:
                self.backend.on_slurm_state(side, entry)

    async def _final(self, side: SlurmJob, entry: QueueEntry | None) -> None:
        returncode = read_exit_file(side)
        state = entry.state if entry is not None else ""
        reason = entry.reason if entry is not None else ""
        if returncode is None or entry is None:
            try:
                info = await self.slurm.final_info(side.slurm_job_id)
            except SlurmCommandError as exc:
                logger.warning("job %s: cannot ask Slurm how job %s ended: %s", side.job.job_id, side.slurm_job_id, exc)
                info = None
            if info is not None:
                state = info.state or state
                reason = info.reason or reason
                if returncode is None:
                    code, sig = parse_exit_code(info.exit_code)
                    returncode = returncode_of(code, sig)
        self.backend.on_slurm_end(side, state, reason, returncode)
