"""Slurm's commands as asyncio subprocesses, each with a timeout; their output parsed here.

    sbatch --parsable SCRIPT          -> the Slurm job id, or Slurm's own error message
    squeue -h -t all -j ID,ID,...     -> one call for every job of the agent per poll
    scontrol show job -o ID           -> a finished job's exit code (kept for MinJobAge)
    sacct -n -P -X -j ID              -> a finished job's state when accounting exists
    scancel ID                        -> cancel
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Mapping
from dataclasses import dataclass

logger = logging.getLogger(__name__)

SQUEUE_FORMAT = "%i|%T|%r|%N"
SACCT_FIELDS = "JobID,State,ExitCode,Reason"


class SlurmCommandError(Exception):
    """A Slurm command failed or timed out; the message is Slurm's own where there is one."""


@dataclass(frozen=True)
class QueueEntry:
    slurm_job_id: str
    state: str
    reason: str
    nodes: str = ""


@dataclass(frozen=True)
class FinalInfo:
    state: str = ""
    exit_code: str = ""  # 'EXIT:SIGNAL'
    reason: str = ""


def slurm_message(stderr: str) -> str:
    """'sbatch: error: Batch job submission failed: Invalid partition name specified' ->
    'Batch job submission failed: Invalid partition name specified' (every line kept)."""
    lines = []
    for line in stderr.strip().splitlines():
        line = line.strip()
        for prefix in ("sbatch: error: ", "squeue: error: ", "scancel: error: ", "scontrol: error: ", "error: "):
            if line.startswith(prefix):
                line = line[len(prefix):]
                break
        if line:
            lines.append(line)
    return "; ".join(lines)[:2000]


def parse_squeue(text: str) -> dict[str, QueueEntry]:
    entries = {}
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) < 3 or not parts[0]:
            continue
        job_id = parts[0].split("_", 1)[0] if "_[" in parts[0] else parts[0]
        entries[job_id] = QueueEntry(job_id, parts[1], parts[2], parts[3] if len(parts) > 3 else "")
    return entries


def parse_scontrol(text: str) -> FinalInfo:
    fields = {}
    for token in text.split():
        key, sep, value = token.partition("=")
        if sep and key in ("JobState", "ExitCode", "Reason") and key not in fields:
            fields[key] = value
    return FinalInfo(fields.get("JobState", ""), fields.get("ExitCode", ""), fields.get("Reason", ""))


def parse_sacct(text: str, slurm_job_id: str) -> FinalInfo | None:
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) >= 3 and parts[0] == slurm_job_id:
            return FinalInfo(parts[1], parts[2], parts[3] if len(parts) > 3 else "")
    return None


class Slurm:
    """Runs Slurm's commands without blocking the loop. `env` is the agent's environment (its
    token removed), so sbatch passes it on to the job as Slurm does by default."""

    def __init__(self, env: Mapping[str, str], timeout: float = 60.0) -> None:
        self.env = dict(env)
        self.timeout = timeout
        self.accounting: bool | None = None  # learnt from the first sacct

    async def _run(self, argv: list[str], timeout: float | None = None) -> tuple[int, str, str]:
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, env=self.env, start_new_session=True,
            )
        except OSError as exc:
            raise SlurmCommandError(f"cannot run {argv[0]}: {exc.strerror or exc}") from exc
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout or self.timeout)
        except (asyncio.TimeoutError, asyncio.CancelledError):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            await proc.wait()
            raise SlurmCommandError(f"{argv[0]} did not answer within {timeout or self.timeout:g} s") from None
        return proc.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace")

    async def submit(self, script_path: str) -> str:
        rc, out, err = await self._run(["sbatch", "--parsable", script_path])
        job_id = out.strip().split(";", 1)[0]
        if rc != 0 or not job_id.isdigit():
            raise SlurmCommandError(slurm_message(err) or f"sbatch exited with code {rc}: {out.strip()[:500]}")
        return job_id

    async def queue(self, job_ids: list[str]) -> dict[str, QueueEntry]:
        """Every listed job Slurm still remembers (one squeue call)."""
        rc, out, err = await self._run(["squeue", "-h", "-t", "all", "-j", ",".join(job_ids), "-o", SQUEUE_FORMAT])
        if rc != 0:
            if "Invalid job id" in err:  # all of them are gone (squeue fails only when none is known)
                return {}
            raise SlurmCommandError(slurm_message(err) or f"squeue exited with code {rc}")
        return parse_squeue(out)

    async def final_info(self, slurm_job_id: str) -> FinalInfo | None:
        """A finished job's state and exit code: scontrol while slurmctld remembers it, else
        sacct where accounting is on; None when neither knows."""
        rc, out, _ = await self._run(["scontrol", "show", "job", "-o", slurm_job_id])
        if rc == 0 and "JobState=" in out:
            return parse_scontrol(out)
        if self.accounting is not False:
            rc, out, err = await self._run(["sacct", "-n", "-P", "-X", "-j", slurm_job_id, "-o", SACCT_FIELDS])
            if "accounting storage is disabled" in err.lower():
                self.accounting = False
            elif rc == 0:
                self.accounting = True
                return parse_sacct(out, slurm_job_id)
        return None

    async def find_by_name(self, name: str) -> str | None:
        """The id of this user's job named `name`, if Slurm still knows one (recovery of a
        submission whose answer was lost)."""
        rc, out, _ = await self._run(["squeue", "-h", "-t", "all", "--me", "-n", name, "-o", "%i"])
        ids = [line.strip() for line in out.splitlines() if line.strip().isdigit()] if rc == 0 else []
        return ids[-1] if ids else None

    async def cancel(self, slurm_job_id: str) -> None:
        rc, _, err = await self._run(["scancel", slurm_job_id])
        if rc != 0:
            raise SlurmCommandError(slurm_message(err) or f"scancel exited with code {rc}")
