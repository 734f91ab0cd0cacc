"""SlurmQueue: the `Processes` of `SlurmAgentCore`, and the one loop that talks to Slurm.

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

from job_cmd.fsutil import META_DIR
from job_cmd.status_file import write_status

from agent import tail
from agent.slurm import script as batch
from agent.slurm.commands import QueueEntry, Slurm, SlurmCommandError
from agent.slurm.record import SlurmJob, Submit
from agent.slurm.states import Phase, map_state, parse_exit_code, returncode_of

logger = logging.getLogger(__name__)

SOON = 0.3  # seconds to the first poll after a submit or a cancel (then twice that, ...)


def read_exit_file(job: SlurmJob) -> int | None:
    try:
        text = (job.run_dir / META_DIR / batch.EXIT_CODE_FILE).read_text().strip()
        return int(text)
    except (OSError, ValueError):
        return None


class SlurmQueue:
    def __init__(self, loop: asyncio.AbstractEventLoop, slurm: Slurm, *, poll_interval: float, max_queued: int) -> None:
        self.loop = loop
        self.slurm = slurm
        self.poll_interval = max(0.1, poll_interval)
        self.max_queued = max(1, max_queued)
        self.core = None  # the SlurmAgentCore, set by whoever builds both
        self._waiting: deque[SlurmJob] = deque()
        self._resolve: list[SlurmJob] = []  # SUBMITTING when an earlier agent stopped
        self._wake = asyncio.Event()
        self._next_poll = 0.0
        self._fast_until = 0.0
        self._fast_step = SOON
        self._task: asyncio.Task | None = None
        self._cancels_sent: set[str] = set()
        self.polls = 0  # squeue calls made (tests check one per interval)

    # ------------------------------------------------------------------ Processes

    def prepare_ahead(self, run_dir: Path) -> None:
        return None  # the Slurm core holds no jobs: Slurm queues them

    def prepare_run_dir(self, run_dir: Path, ahead: None = None) -> None:
        os.makedirs(run_dir / META_DIR, mode=0o700, exist_ok=True)

    def spawn(self, job, launch, env) -> None:  # pragma: no cover - the Slurm core never spawns
        raise OSError("jobs of the sbatch agent run under Slurm, not as its children")

    def signal_group(self, job, sig: int) -> None:
        if isinstance(job, SlurmJob) and job.submit is not Submit.WAITING:
            job.cancel_requested = True
            self.wake()

    def call_later(self, delay: float, callback: Callable[[], None]) -> asyncio.TimerHandle:
        return self.loop.call_later(delay, callback)

    def write_status(self, job: SlurmJob) -> None:
        write_status(job.run_dir, job.status())
        job.save()

    def log_size(self, job) -> int:
        return tail.log_size(job)

    def kill_all(self, jobs: list) -> None:
        """At the agent's exit: scancel what is in Slurm (fire and forget; we are leaving)."""
        ids = [j.slurm_job_id for j in jobs if isinstance(j, SlurmJob) and j.slurm_job_id]
        if ids:
            try:
                subprocess.Popen(["scancel", *ids], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL, start_new_session=True, env=self.slurm.env)
            except OSError as exc:
                logger.warning("cannot scancel %s: %s", ",".join(ids), exc)

    # ------------------------------------------------------------------ from the core

    def write_script(self, job: SlurmJob, text: str) -> None:
        path = job.run_dir / META_DIR / batch.SCRIPT_FILE
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o700)
        try:
            os.write(fd, text.encode())
        finally:
            os.close(fd)
        os.replace(tmp, path)

    def enqueue(self, job: SlurmJob) -> None:
        self._waiting.append(job)
        self.wake()

    def unqueue(self, job: SlurmJob) -> None:
        try:
            self._waiting.remove(job)
        except ValueError:
            pass

    def adopt(self, job: SlurmJob) -> None:
        """A job an earlier agent left unfinished (see SlurmAgentCore.recover)."""
        if job.submit is Submit.WAITING:
            self._waiting.append(job)
        elif job.submit is Submit.SUBMITTING:
            self._resolve.append(job)
        self.wake()

    def cancel_detached(self, job: SlurmJob) -> None:
        """scancel a job the agent no longer tracks (an attempt the supervisor gave up on)."""
        self.unqueue(job)
        if job.slurm_job_id and job.slurm_job_id not in self._cancels_sent:
            self._cancels_sent.add(job.slurm_job_id)
            task = self.loop.create_task(self._cancel_quietly(job))
            task.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def _cancel_quietly(self, job: SlurmJob) -> None:
        try:
            await self.slurm.cancel(job.slurm_job_id)
        except SlurmCommandError as exc:
            logger.warning("job %s attempt %d: scancel %s failed: %s", job.job_id, job.attempt, job.slurm_job_id, exc)

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
        return [j for j in self.core.jobs.values() if isinstance(j, SlurmJob)]

    async def turn(self) -> None:
        for job in self._resolve[:]:
            self._resolve.remove(job)
            await self._resolve_submission(job)
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

    async def _resolve_submission(self, job: SlurmJob) -> None:
        name = batch.job_name(job.job_id, job.attempt)
        try:
            found = await self.slurm.find_by_name(name)
        except SlurmCommandError as exc:
            logger.warning("job %s: cannot look up Slurm job %s: %s", job.job_id, name, exc)
            found = None
        if found:
            self.core.on_submitted(job, found)
        else:
            self.core.on_submit_failed(job, "the agent stopped while submitting it and Slurm does not know it; "
                                            "it was not submitted again, to be safe")

    async def _submit_waiting(self) -> None:
        in_queue = sum(1 for j in self._jobs() if j.submit is not Submit.WAITING and not j.is_terminal)
        while self._waiting:
            job = self._waiting[0]
            if job.is_terminal or job.submit is not Submit.WAITING:
                self._waiting.popleft()
                continue
            if in_queue >= self.max_queued:
                why = f"jobvisor: {in_queue} of your jobs are in the Slurm queue, the most allowed at once"
                for waiting in self._waiting:
                    self.core.on_waiting(waiting, why)
                return
            self._waiting.popleft()
            self.core.on_submitting(job)
            try:
                slurm_job_id = await self.slurm.submit(str(job.run_dir / META_DIR / batch.SCRIPT_FILE))
            except SlurmCommandError as exc:
                logger.warning("job %s attempt %d: sbatch refused it: %s", job.job_id, job.attempt, exc)
                self.core.on_submit_failed(job, str(exc))
                continue
            in_queue += 1
            self.core.on_submitted(job, slurm_job_id)
            self._poll_soon()

    async def _send_cancels(self) -> None:
        for job in self._jobs():
            if job.cancel_requested and job.slurm_job_id and not job.is_terminal and job.slurm_job_id not in self._cancels_sent:
                self._cancels_sent.add(job.slurm_job_id)
                try:
                    await self.slurm.cancel(job.slurm_job_id)
                except SlurmCommandError as exc:
                    logger.warning("job %s: scancel %s failed: %s", job.job_id, job.slurm_job_id, exc)
                self._poll_soon()

    async def poll(self) -> None:
        """One squeue call for every job of this agent that is in Slurm."""
        jobs = [j for j in self._jobs() if j.submit is Submit.SUBMITTED and not j.is_terminal]
        if not jobs:
            return
        self.polls += 1
        try:
            entries = await self.slurm.queue([j.slurm_job_id for j in jobs])
        except SlurmCommandError as exc:
            logger.warning("squeue failed: %s", exc)
            return
        for job in jobs:
            if job.is_terminal:
                continue
            entry = entries.get(job.slurm_job_id)
            mapped = map_state(entry.state) if entry is not None else None
            if entry is None or (mapped is not None and mapped.phase is Phase.ENDED):
                await self._final(job, entry)
            else:
                self.core.on_slurm_state(job, entry)

    async def _final(self, job: SlurmJob, entry: QueueEntry | None) -> None:
        returncode = read_exit_file(job)
        state = entry.state if entry is not None else ""
        reason = entry.reason if entry is not None else ""
        if returncode is None or entry is None:
            try:
                info = await self.slurm.final_info(job.slurm_job_id)
            except SlurmCommandError as exc:
                logger.warning("job %s: cannot ask Slurm how job %s ended: %s", job.job_id, job.slurm_job_id, exc)
                info = None
            if info is not None:
                state = info.state or state
                reason = info.reason or reason
                if returncode is None:
                    code, sig = parse_exit_code(info.exit_code)
                    returncode = returncode_of(code, sig)
        self.core.on_slurm_end(job, state, reason, returncode)
