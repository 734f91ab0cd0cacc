"""`jobvisor wait ID...` and `jobvisor cancel ID... | --state S | --all`: follow jobs until they
end, on the event stream (polling when there is none), and say how they ended.

`wait`'s exit status tells a script how its jobs ended; `WaitStatus` and `wait_status` are the
whole rule (and `--help` prints it).
"""

from __future__ import annotations

import argparse
import enum
import sys
import time
from typing import Callable, Iterable

from jobvisor.cli.client import ApiClient, ApiError, add_client_arguments, client_from_args
from jobvisor.cli.errors import CliError
from jobvisor.cli.resolve import USAGE, array_jobs, array_of, fetch_jobs, resolve_jobs
from jobvisor.reasons import describe_end
from jobvisor.states import TERMINAL_STATES, JobState

TERMINAL = frozenset(s.value for s in TERMINAL_STATES)
POLL_SECONDS = 1.0
IDLE_SECONDS = 40.0  # longer than the stream's heartbeat: a silent stream is a dead one
CANCEL_SETTLE_SECONDS = 30.0
EVENT_KINDS = frozenset({"transition", "progress"})  # of GET /events: the ones about jobs  # how long `cancel` waits for a started job to stop


class WaitStatus(enum.IntEnum):
    COMPLETED = 0
    FAILED = 1
    USAGE = USAGE  # a usage error, or a job that does not exist
    CANCELED = 3
    TIMED_OUT = 4
    LOST = 5
    WAIT_TIMEOUT = 124  # `--timeout` passed first (as timeout(1) exits)


STATE_STATUS = {
    JobState.COMPLETED: WaitStatus.COMPLETED, JobState.FAILED: WaitStatus.FAILED,
    JobState.CANCELED: WaitStatus.CANCELED, JobState.TIMED_OUT: WaitStatus.TIMED_OUT, JobState.LOST: WaitStatus.LOST,
}
# When jobs end differently the first of these that occurs wins: a job's own failure is what a
# person must look at first; a walltime or a lost agent next; a cancel was someone's choice.
PRECEDENCE = (WaitStatus.FAILED, WaitStatus.TIMED_OUT, WaitStatus.LOST, WaitStatus.CANCELED, WaitStatus.COMPLETED)

EXIT_HELP = """\
exit status:
  0    every job completed
  1    a job failed
  4    a job timed out (its walltime)
  5    a job was lost (its agent vanished, no retry left)
  3    a job was canceled
  124  --timeout passed before every job ended
  2    usage error, or a job that does not exist
When jobs end differently the status is the first in this list that applies
(failed, timed out, lost, canceled, completed)."""


def wait_status(states: Iterable[str]) -> WaitStatus:
    """The exit status for jobs that ended in `states` (see PRECEDENCE)."""
    found = {STATE_STATUS[JobState(s)] for s in states}
    return next((status for status in PRECEDENCE if status in found), WaitStatus.COMPLETED)


def end_line(job: dict, with_id: bool) -> str:
    """`completed (exit code 0)`, `failed (exit code 3): ValueError: x`, id first if asked."""
    line = describe_end(job["state"], job.get("exit_code"), job.get("reason") or "")
    return f"{job['id']} {line}" if with_id else line


def render_progress(state: str, fraction: float | None, message: str = "", width: int = 30) -> str:
    """One status line: `[#########.....]  30% running: message` (no bar without a fraction)."""
    if fraction is None:
        bar = ""
    else:
        fraction = min(1.0, max(0.0, fraction))
        filled = int(round(fraction * width))
        bar = f"[{'#' * filled}{'.' * (width - filled)}] {fraction * 100:3.0f}% "
    return f"{bar}{state}" + (f": {message}" if message else "")


def summary_line(jobs: dict[str, dict]) -> str:
    """Several jobs' progress: `5 jobs: 2 completed, 1 running, 2 queued`."""
    counts: dict[str, int] = {}
    for job in jobs.values():
        counts[job["state"]] = counts.get(job["state"], 0) + 1
    order = [s.value for s in JobState]
    parts = [f"{counts[s]} {s}" for s in order if s in counts]
    return f"{len(jobs)} jobs: " + ", ".join(parts)


class StatusLine:
    """A line on stderr that redraws in place on a terminal, and is printed when it changes
    otherwise (so a log file gets each change once)."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.tty = sys.stderr.isatty()
        self.last = ""
        self.shown = ""  # the last line shown, which stays on the screen after `done`

    def show(self, line: str) -> None:
        if self.quiet or line == self.last:
            return
        sys.stderr.write(("\r\x1b[K" + line) if self.tty else line + "\n")
        sys.stderr.flush()
        self.last = self.shown = line

    def done(self) -> None:
        if self.tty and self.last and not self.quiet:
            sys.stderr.write("\n")
            sys.stderr.flush()
        self.last = ""


class Follower:
    """The latest view of some jobs, brought up to date from the event stream (or by polling)
    until every one has ended or a deadline passes. `on_end(job)` is called once per job, when
    it is seen ended."""

    def __init__(self, client: ApiClient, jobs: dict[str, dict], status: StatusLine,
                 on_end: Callable[[dict], None]) -> None:
        self.client = client
        self.jobs = jobs
        self.status = status
        self.on_end = on_end
        self.pending = {job_id for job_id, job in jobs.items() if job["state"] not in TERMINAL}
        for job_id, job in jobs.items():
            if job_id not in self.pending:
                on_end(job)

    def _show(self, event: dict | None = None) -> None:
        if len(self.jobs) == 1:
            job = next(iter(self.jobs.values()))
            if not self.pending:
                return  # its end line said it
            if event is not None:
                state = event.get("state") or job["state"]
                self.status.show(render_progress(state, event.get("progress"), event.get("message") or ""))
            else:
                self.status.show(render_progress(job["state"], job.get("progress"), job.get("progress_message") or ""))
        else:
            self.status.show(summary_line(self.jobs))

    def _refresh(self, ids: Iterable[str]) -> None:
        for job_id in list(ids):
            job = self.client.call("GET", f"/jobs/{job_id}")
            self.jobs[job_id] = job
            if job["state"] in TERMINAL and job_id in self.pending:
                self.pending.discard(job_id)
                self.status.done()
                self.on_end(job)
        self._show()

    def run(self, deadline: float | None) -> bool:
        """True when every job has ended; False when the deadline passed first."""
        if not self.pending:
            return True
        self._show()
        while self.pending:
            if deadline is not None and time.monotonic() >= deadline:
                return False
            try:
                self._follow_events(deadline)
                if not self.pending:
                    break
                # the stream ended (a gateway going down, a slow reader told to reconnect):
                # subscribe again after a pause, never past the deadline
            except (ApiError, TimeoutError, OSError, ValueError) as exc:
                if isinstance(exc, ApiError) and exc.http_status in (401, 403, 404):
                    raise
                self._pause(deadline)  # no stream: poll
                self._refresh(self.pending)
                continue
            self._pause(deadline)
        return True

    @staticmethod
    def _pause(deadline: float | None) -> None:
        left = POLL_SECONDS if deadline is None else deadline - time.monotonic()
        time.sleep(max(0.0, min(POLL_SECONDS, left)))

    def _follow_events(self, deadline: float | None) -> None:
        """One subscription: re-read the jobs right after subscribing (a change between the
        first read and the subscription is not missed), then follow their events."""
        idle = IDLE_SECONDS if deadline is None else max(0.5, min(IDLE_SECONDS, deadline - time.monotonic() + 0.2))
        query = {"job": next(iter(self.pending))} if len(self.jobs) == 1 else None
        with self.client.events("/events", query=query, idle_timeout=idle) as stream:
            self._refresh(self.pending)
            if not self.pending:
                return
            for kind, event, _id in stream:
                if kind not in EVENT_KINDS or not isinstance(event, dict) or event.get("job_id") not in self.pending:
                    continue
                job_id, data = event["job_id"], event.get("data") or {}
                if kind == "transition" and data.get("state") in TERMINAL:  # re-read: exit code, reason, a retry
                    self._refresh([job_id])
                elif len(self.jobs) == 1:
                    self._show(data if kind == "progress" else {"state": data.get("state", "")})
                elif data.get("state"):
                    self.jobs[job_id] = {**self.jobs[job_id], "state": data["state"]}
                    self._show()
                if not self.pending or (deadline is not None and time.monotonic() >= deadline):
                    return


def _read(client: ApiClient, job_id: str) -> dict:
    try:
        return client.call("GET", f"/jobs/{job_id}")
    except ApiError as exc:
        if exc.http_status == 404:
            raise CliError(f"no job {job_id}", status=USAGE) from None
        raise


# --------------------------------------------------------------------------- wait


def named_jobs(client: ApiClient, refs: list[str], arrays: list[str] | None) -> list[str]:
    """The ids of the jobs named, then of every job of each array named, without repeats."""
    ids = resolve_jobs(client, refs)
    for ref in arrays or []:
        ids += [job_id for job_id in array_jobs(client, ref) if job_id not in ids]
    return ids


def cmd_wait(args: argparse.Namespace) -> int:
    if not args.ids and not args.array:
        raise CliError("wait takes jobs (ids, prefixes or names) or --array ARRAY", status=USAGE)
    client = client_from_args(args)
    ids = named_jobs(client, args.ids, args.array)
    jobs = {job_id: _read(client, job_id) for job_id in ids}
    several = len(ids) > 1
    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    status = StatusLine(args.quiet)
    follower = Follower(client, jobs, status, lambda job: print(end_line(job, several), flush=True))
    ended = follower.run(deadline)
    status.done()
    if not ended:
        still = ", ".join(f"{job_id} {jobs[job_id]['state']}" for job_id in sorted(follower.pending))
        print(f"jobvisor: --timeout of {args.timeout:g} s passed; still not ended: {still}", file=sys.stderr)
        return WaitStatus.WAIT_TIMEOUT
    if several and status.shown != summary_line(jobs):  # the totals, unless the status line ended on them
        print(summary_line(jobs), file=sys.stderr)
    return wait_status(job["state"] for job in jobs.values())


# --------------------------------------------------------------------------- cancel


def _targets(client: ApiClient, args: argparse.Namespace) -> list[str]:
    """The ids `cancel` is asked to cancel: the jobs named; or every unfinished job of the
    arrays named, of some states (--state), or of all (--all)."""
    if bool(args.ids) + bool(args.array) + bool(args.state) + bool(args.all) != 1:
        raise CliError("cancel takes jobs (ids, prefixes or names), or --array A, or --state S, or --all: one of them",
                       status=USAGE)
    if args.ids:
        return resolve_jobs(client, args.ids, newest=False)  # a name of several jobs: say which
    unfinished = [s.value for s in JobState if s.value not in TERMINAL]
    if args.array:
        return [job["id"] for ref in args.array
                for job in fetch_jobs(client, ",".join(unfinished), sys.maxsize, array=array_of(client, ref))]
    states = unfinished
    if args.state:
        states = [s.strip() for s in args.state.split(",") if s.strip()]
        ended = [s for s in states if s in TERMINAL]
        if ended:
            raise CliError(f"jobs that are {', '.join(ended)} have ended already; "
                           f"--state takes {', '.join(unfinished)}", status=USAGE)
    if args.owner and args.all_users:
        raise CliError("--owner and --all-users say different things: give one", status=USAGE)
    jobs = fetch_jobs(client, ",".join(states), limit=sys.maxsize)
    if not args.all_users:  # an admin sees everyone's jobs: only theirs, unless they say whose
        owner = args.owner or client.call("GET", "/whoami")["user"]
        jobs = [job for job in jobs if job.get("owner") == owner]
    return [job["id"] for job in jobs]


def cmd_cancel(args: argparse.Namespace) -> int:
    """Cancel each job, then wait (a little) until the started ones have stopped, and print the
    state each ended in. A job that had ended already is reported, not an error, when it was
    picked by --array/--state/--all (it ended in between); named, it is an error (status 1)."""
    client = client_from_args(args)
    ids = _targets(client, args)
    if not ids:
        print("no jobs to cancel", file=sys.stderr)
        return 0
    jobs: dict[str, dict] = {}
    failed = 0
    for job_id in ids:
        try:
            jobs[job_id] = client.call("POST", f"/jobs/{job_id}/cancel")
        except ApiError as exc:
            if exc.http_status != 409:
                raise
            if args.ids:
                print(f"jobvisor: {exc.detail}", file=sys.stderr)  # names the job and its state
                failed += 1
            else:
                jobs[job_id] = client.call("GET", f"/jobs/{job_id}")
    follower = Follower(client, jobs, StatusLine(quiet=True), lambda job: print(f"{job['id']} {job['state']}", flush=True))
    if not args.no_wait:
        follower.run(time.monotonic() + CANCEL_SETTLE_SECONDS)
    for job_id in sorted(follower.pending):  # asked to stop; its agent has not stopped it yet
        print(f"{job_id} {jobs[job_id]['state']} (stopping)")
    return 1 if failed else 0


# --------------------------------------------------------------------------- parsers


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "wait", help="wait for jobs to end; the exit status says how they ended",
        description="Wait until every job named has ended. One job: its end is printed; several: one "
                    "line per job (id first) as each ends. Jobs are named by id, a unique id prefix, "
                    "or a unique name.",
        epilog=EXIT_HELP, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("ids", nargs="*", metavar="JOB", help="job id, unique id prefix or unique name")
    p.add_argument("--array", action="append", metavar="ARRAY",
                   help="every job of this job array (the id submit --array printed); repeatable")
    p.add_argument("--timeout", type=float, help="give up after this many seconds (exit status 124)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    add_client_arguments(p)
    p.set_defaults(func=cmd_wait)

    p = subparsers.add_parser(
        "cancel", help="cancel jobs; prints the state each ended in",
        description="Cancel jobs named by id, unique id prefix or unique name, or every unfinished job "
                    "of yours (--all) or those in some states (--state); an admin adds --owner or --all-users "
                    "for other users' jobs. Waits up to "
                    f"{CANCEL_SETTLE_SECONDS:g} s for started jobs to stop, then prints each job's state.",
    )
    p.add_argument("ids", nargs="*", metavar="JOB", help="job id, unique id prefix or unique name")
    p.add_argument("--array", action="append", metavar="ARRAY",
                   help="every unfinished job of this job array (the id submit --array printed); repeatable")
    p.add_argument("--state", help="cancel every job in these states (comma-separated, e.g. queued)")
    p.add_argument("--all", action="store_true", help="cancel every unfinished job")
    p.add_argument("--owner", metavar="USER", help="with --state/--all, as an admin: this user's jobs instead of yours")
    p.add_argument("--all-users", dest="all_users", action="store_true",
                   help="with --state/--all, as an admin: every user's jobs, not only yours")
    p.add_argument("--no-wait", dest="no_wait", action="store_true",
                   help="do not wait for started jobs to stop (they are printed as stopping)")
    add_client_arguments(p)
    p.set_defaults(func=cmd_cancel)
