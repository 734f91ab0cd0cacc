"""Why a job ended, in words: every reason a job's end carries is composed here.

An agent decides a job's reason when it ends (`agent.jobs.exit_outcome`, the Slurm backend,
the container's out-of-memory counter), and the job may say more itself: a python job's
exception travels up from `job_cmd.pyrun` (`Code.failure`) and replaces the bare exit code.
The supervisor falls back to these words when an agent gave none, and the CLI prints a job's
end with `describe_end`, which never says the same thing twice.

The reasons, by cause:
    the process exited non-zero          "exit code 3"
    a signal killed it                   "killed by SIGKILL"
    the walltime                         "walltime 00:05:00 exceeded"         (timed_out)
    the memory limit                     "out of memory" [": " detail]
    a python job's exception             "ValueError: bad mesh size"
"""

from __future__ import annotations

import signal

from jobvisor.resources import format_walltime

OUT_OF_MEMORY = "out of memory"
MAX_REASON = 500  # characters of a job's own words kept (an exception's message may be a page)


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def exit_reason(returncode: int) -> str:
    """A process's end in Popen's convention (negative: the signal that killed it)."""
    if returncode < 0:
        return f"killed by {signal_name(-returncode)}"
    return f"exit code {returncode}"


def walltime_exceeded(walltime: float) -> str:
    return f"walltime {format_walltime(walltime)} exceeded"


def out_of_memory(detail: str = "") -> str:
    """A job killed for its memory; `detail` says which limit, where that is known."""
    return f"{OUT_OF_MEMORY}: {detail}" if detail else OUT_OF_MEMORY


def exception_reason(type_name: str, message: str) -> str:
    """A python job's exception as its reason: its type, and the first line of its message."""
    first = message.strip().splitlines()[0] if message.strip() else ""
    text = f"{type_name}: {first}" if first else type_name
    return text if len(text) <= MAX_REASON else text[:MAX_REASON - 3] + "..."


def describe_end(state: str, exit_code: int | None, reason: str) -> str:
    """A job's end in one line for a person, each thing said once: "completed (exit code 0)",
    "failed (exit code 3)", "failed (exit code 1): ValueError: bad mesh size", "failed: killed
    by SIGKILL" (a signal's code is its reason), "lost: agent lost" (no process, no code)."""
    line = state if exit_code is None or exit_code < 0 else f"{state} (exit code {exit_code})"
    bare = exit_reason(exit_code) if exit_code is not None and exit_code >= 0 else None
    if bare is not None and (reason == bare or reason.startswith(bare + ";")):
        reason = reason[len(bare) + 1:].strip()  # the code is said already; what follows it is not
    if reason and state != "completed":
        line += f": {reason}"
    return line
