"""Client commands: submit, wait, logs, list, show, cancel, files, get."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.parse
from datetime import datetime, timezone, tzinfo
from pathlib import Path
from typing import Any

from jobvisor.cli.client import ApiClient, ApiError, add_client_arguments, client_from_args
from jobvisor.cli import uploads
from jobvisor.cli.errors import CliError
from jobvisor.states import TERMINAL_STATES

TERMINAL = frozenset(s.value for s in TERMINAL_STATES)
POLL_SECONDS = 1.0
SLURM_OPTIONS = ("cluster", "partition", "qos", "account", "constraint")


# --------------------------------------------------------------------------- submit


def build_job(args: argparse.Namespace) -> dict:
    """The job object `submit` sends, from its options (pure: tested without a gateway)."""
    argv = list(args.argv or [])
    if argv and argv[0] == "--":
        argv = argv[1:]
    params: Any = None
    if args.params is not None:
        try:
            params = json.loads(args.params)
        except ValueError as exc:
            raise CliError(f"--params is not valid JSON: {exc}") from None
    code = args.code
    if args.entry:
        code = code or "python"
        params = {"entry": args.entry, "args": params if params is not None else {}}
        if args.path:
            params["path"] = list(args.path)
    elif args.path:
        raise CliError("--path is for python jobs (with --entry)")
    elif argv:
        code = code or "shell"
        params = {"argv": argv} if params is None else {**params, "argv": argv}
    if not code:
        raise CliError("nothing to run: give a command after `--`, or --code with --params (or --entry)")
    job: dict[str, Any] = {"code": code, "params": params if params is not None else {}}
    resources: dict[str, Any] = {}
    if args.cpus is not None:
        resources["cpus"] = args.cpus
    if args.mem:
        resources["memory"] = args.mem
    if args.walltime:
        resources["walltime"] = args.walltime
    for key in SLURM_OPTIONS:  # sbatch driver: where and under which allocation
        value = getattr(args, key, None)
        if value:
            resources[key] = value
    if resources:
        job["resources"] = resources
    if args.driver:
        job["driver"] = args.driver
    if args.name:
        job["name"] = args.name
    if args.max_retries is not None:
        job["max_retries"] = args.max_retries
    if args.env:
        job["env"] = uploads.parse_env(args.env)
    if args.workdir:
        job["workdir"] = os.path.abspath(os.path.expanduser(args.workdir))
    return job


def cmd_submit(args: argparse.Namespace) -> int:
    job = build_job(args)
    files = uploads.parse_inputs(args.input or [])
    if not args.workdir:  # in place, the job finds its program where it is
        files += uploads.implied_inputs(job, files)
    client = client_from_args(args)
    if files:
        created = client.call("POST", "/jobs", form=uploads.Form(job, files))
    else:
        created = client.call("POST", "/jobs", body=job)
    print(created["id"])
    return 0


# --------------------------------------------------------------------------- wait


def render_progress(state: str, fraction: float | None, message: str = "", width: int = 30) -> str:
    """One status line: `[#########.....]  30% running: message` (no bar without a fraction)."""
    if fraction is None:
        bar = ""
    else:
        fraction = min(1.0, max(0.0, fraction))
        filled = int(round(fraction * width))
        bar = f"[{'#' * filled}{'.' * (width - filled)}] {fraction * 100:3.0f}% "
    return f"{bar}{state}" + (f": {message}" if message else "")


class _Progress:
    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.tty = sys.stderr.isatty()
        self.last = ""

    def show(self, state: str, fraction: float | None, message: str = "") -> None:
        line = render_progress(state, fraction, message)
        if self.quiet or line == self.last:
            return
        if self.tty:
            sys.stderr.write("\r\x1b[K" + line)
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()
        self.last = line

    def done(self) -> None:
        if self.tty and self.last and not self.quiet:
            sys.stderr.write("\n")
            sys.stderr.flush()


def _finish(job: dict, progress: _Progress) -> int:
    progress.done()
    code = job.get("exit_code")
    line = f"{job['state']} (exit code {code if code is not None else '-'})"
    if job.get("reason") and job["state"] != "completed":
        line += f": {job['reason']}"
    print(line)
    return 0 if job["state"] == "completed" else 1


def cmd_wait(args: argparse.Namespace) -> int:
    client = client_from_args(args)
    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    progress = _Progress(args.quiet)
    job = client.call("GET", f"/jobs/{args.id}")
    while True:
        if job["state"] in TERMINAL:
            return _finish(job, progress)
        progress.show(job["state"], job.get("progress"), job.get("progress_message") or "")
        if deadline is not None and time.monotonic() >= deadline:
            progress.done()
            raise CliError(f"job {args.id} is still {job['state']} after {args.timeout} s")
        try:
            job = _wait_on_events(client, args.id, job, progress, deadline)
        except (ApiError, TimeoutError, OSError, ValueError) as exc:
            if isinstance(exc, ApiError) and exc.http_status in (401, 403, 404):
                raise
            time.sleep(POLL_SECONDS)  # no event stream: poll
            job = client.call("GET", f"/jobs/{args.id}")


def _wait_on_events(
    client: ApiClient, job_id: str, job: dict, progress: _Progress, deadline: float | None
) -> dict:
    """Follow the job's events until it ends, the stream ends or the deadline passes; then the
    job as the gateway has it now. The job is re-read right after subscribing, so a transition
    between the first read and the subscription is not missed."""
    idle = 40.0 if deadline is None else max(1.0, min(40.0, deadline - time.monotonic() + 0.5))
    with client.events("/events", query={"job": job_id}, idle_timeout=idle) as stream:
        fresh = client.call("GET", f"/jobs/{job_id}")
        if fresh["state"] in TERMINAL:
            return fresh
        progress.show(fresh["state"], fresh.get("progress"), fresh.get("progress_message") or "")
        for kind, event, _ in stream:
            if kind not in ("transition", "progress") or event.get("job_id") != job_id:
                continue
            data = event["data"]
            if kind == "progress":
                progress.show(data["state"], data.get("progress"), data.get("message") or "")
            else:
                progress.show(data["state"], None, "")
            if kind == "transition" and data["state"] in TERMINAL:
                break
            if deadline is not None and time.monotonic() >= deadline:
                break
    return client.call("GET", f"/jobs/{job_id}")


# --------------------------------------------------------------------------- logs


def cmd_logs(args: argparse.Namespace) -> int:
    client = client_from_args(args)
    out = sys.stdout
    if not args.follow:
        with client.open("GET", f"/jobs/{args.id}/log", accept="text/plain") as resp:
            while chunk := resp.read(64 * 1024):
                out.buffer.write(chunk)
        out.flush()
        return 0
    offset = 0
    while True:
        try:
            with client.events(f"/jobs/{args.id}/log", query={"follow": 1, "offset": offset}) as stream:
                for kind, data, _ in stream:
                    if kind == "log":
                        out.write(data["text"])
                        out.flush()
                        offset = data["next"]
                    elif kind == "end":
                        if not args.quiet:
                            code = data.get("exit_code")
                            print(f"[{data['state']} (exit code {code if code is not None else '-'})]", file=sys.stderr)
                        return 0
                    elif kind == "error":
                        raise CliError(f"log stream failed: {data.get('detail')}")
        except TimeoutError:
            pass  # idle past heartbeats: reconnect from where we are
        time.sleep(0.5)


# --------------------------------------------------------------------------- list, show, cancel


def format_table(rows: list[list[str]], headers: list[str]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows)]
    lines = ["  ".join(str(v).ljust(w) for v, w in zip(row, widths)).rstrip() for row in [headers, *rows]]
    return "\n".join(lines)


def cmd_list(args: argparse.Namespace) -> int:
    client = client_from_args(args)
    jobs: list[dict] = []
    after = ""
    while len(jobs) < args.limit:
        page = client.call(
            "GET", "/jobs", query={"state": args.state, "limit": min(1000, args.limit - len(jobs)), "after": after}
        )
        jobs += page["jobs"]
        after = page.get("next")
        if not after:
            break
    if args.json:
        print(json.dumps(jobs, indent=2))
        return 0
    rows = [
        [j["id"], j["state"], "" if j.get("queue_position") is None else j["queue_position"],
         j.get("code", ""), j.get("name") or "", local_time(j["created_at"]) if j.get("created_at") else ""]
        for j in jobs
    ]
    if rows:
        print(format_table(rows, ["ID", "STATE", "QPOS", "CODE", "NAME", "CREATED"]))
    return 0


SHOW_ORDER = (
    "id", "name", "owner", "state", "reason", "queue_position", "code", "driver", "params", "resources",
    "attempt", "max_retries", "exit_code", "result", "progress", "progress_message",
    "created_at", "started_at", "finished_at", "info",
)


TIME_KEYS = frozenset({"created_at", "started_at", "finished_at"})


def local_time(value: str | float, tz: tzinfo | None = None) -> str:
    """An ISO time string or a Unix time, as ISO in local time (or `tz`) to the millisecond:
    `2026-12-05 07:01:02.345+01:00`. A string that is not a time is shown as it is."""
    try:
        at = datetime.fromtimestamp(value, timezone.utc) if isinstance(value, (int, float)) else datetime.fromisoformat(value)
    except (TypeError, ValueError, OverflowError, OSError):
        return str(value)
    if at.tzinfo is None:
        at = at.replace(tzinfo=timezone.utc)  # the supervisor's times are UTC
    return at.astimezone(tz).isoformat(sep=" ", timespec="milliseconds")


def format_history(history: list[dict], tz: tzinfo | None = None) -> list[str]:
    """One line per transition, oldest first: when, attempt, state, why. The attempt column
    shows where a retry began."""
    states = [str(h.get("state", "")) for h in history]
    width = max((len(s) for s in states), default=0)
    lines = []
    for entry, state in zip(history, states):
        when = local_time(entry.get("at"), tz) if entry.get("at") is not None else "-"
        lines.append(f"  {when}  #{entry.get('attempt', '-')}  {state.ljust(width)}  {entry.get('reason') or ''}".rstrip())
    return lines


def format_job(job: dict, tz: tzinfo | None = None) -> str:
    """`show`'s text: one `key  value` line per field, times in local time, then the history."""
    keys = [k for k in SHOW_ORDER if k in job] + sorted(k for k in job if k not in SHOW_ORDER and k != "history")
    width = max(len(k) for k in keys)
    lines = []
    for key in keys:
        value = job[key]
        if isinstance(value, (dict, list)):
            value = json.dumps(value, sort_keys=True)
        elif value is None:
            value = "-"
        elif key in TIME_KEYS:
            value = local_time(value, tz)
        lines.append(f"{key.ljust(width)}  {value}")
    history = job.get("history")
    if isinstance(history, list):
        lines.append("history" + ("" if history else "  -"))
        lines.extend(format_history(history, tz))
    return "\n".join(lines)


def cmd_show(args: argparse.Namespace) -> int:
    job = client_from_args(args).call("GET", f"/jobs/{args.id}")
    print(json.dumps(job, indent=2) if args.json else format_job(job))
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    job = client_from_args(args).call("POST", f"/jobs/{args.id}/cancel")
    # a started job ends when its agent has stopped it, a moment after this answer
    print(f"{job['id']} {job['state'] if job['state'] in TERMINAL else 'canceling'}")
    return 0


# --------------------------------------------------------------------------- files


def cmd_files(args: argparse.Namespace) -> int:
    reply = client_from_args(args).call("GET", f"/jobs/{args.id}/files")
    rows = [[f["path"], f["size"]] for f in reply["files"]]
    if rows:
        print(format_table(rows, ["PATH", "SIZE"]))
    return 0


def cmd_get(args: argparse.Namespace) -> int:
    client = client_from_args(args)
    quoted = "/".join(urllib.parse.quote(p) for p in args.path.split("/"))
    target = args.output or Path(args.path).name
    with client.open("GET", f"/jobs/{args.id}/files/{quoted}", accept="*/*") as resp:
        if target == "-":
            while chunk := resp.read(256 * 1024):
                sys.stdout.buffer.write(chunk)
            sys.stdout.flush()
            return 0
        tmp = f"{target}.part"
        try:
            with open(tmp, "wb") as fh:
                while chunk := resp.read(256 * 1024):
                    fh.write(chunk)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    print(target, file=sys.stderr)
    return 0


# --------------------------------------------------------------------------- parsers


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("submit", help="submit a job; prints its id",
                              description="Submit a job. `-- argv...` runs a command (code shell).")
    p.add_argument("--code", help="code to run: shell, python, demo or a plugin (default: shell with argv)")
    p.add_argument("--driver", help="local, docker, sbatch (default: the server's)")
    p.add_argument("--cpus", type=int)
    p.add_argument("--mem", help="memory, e.g. 512M or 2G; a bare number is megabytes, as in Slurm (--mem 512 = 512M)")
    p.add_argument("--walltime", help="HH:MM:SS")
    for key in SLURM_OPTIONS:
        p.add_argument(f"--{key}", help=f"sbatch driver: Slurm {key}" if key != "cluster" else "sbatch driver: the cluster")
    p.add_argument("--name")
    p.add_argument("--max-retries", type=int, dest="max_retries")
    p.add_argument("--entry", help="python code: module:function to call")
    p.add_argument("--params", help="params as JSON (python: the function's args)")
    p.add_argument("--input", action="append", metavar="FILE[:DEST]",
                   help="upload FILE (or a directory's files) into the run dir at DEST before the job starts "
                        "(default: FILE's relative path, else its name); repeat for more. A relative program "
                        "(-- ./sim.sh) or a python entry's module (mysim.py) found here is uploaded too")
    p.add_argument("--env", action="append", metavar="K=V",
                   help="set an environment variable of the job (K alone: this shell's value); repeat for more. "
                        "Wins over a shell job's params.env")
    p.add_argument("--workdir", metavar="DIR",
                   help="local driver: run in DIR itself instead of a fresh run dir (only under a directory "
                        "the server's [local] workdirs allows; the output log stays in the run dir)")
    p.add_argument("--path", action="append", metavar="DIR",
                   help="python jobs: add DIR to sys.path (relative: inside the run dir, e.g. uploaded with "
                        "--input; absolute: where the agent runs); repeat for more")
    p.add_argument("argv", nargs="*", help="the command (after --)")
    add_client_arguments(p)
    p.set_defaults(func=cmd_submit)

    p = subparsers.add_parser("wait", help="wait for a job to end; exit 0 if it completed")
    p.add_argument("id")
    p.add_argument("--timeout", type=float, help="give up after this many seconds")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    add_client_arguments(p)
    p.set_defaults(func=cmd_wait)

    p = subparsers.add_parser("logs", help="print a job's output log")
    p.add_argument("id")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing until the job ends")
    p.add_argument("-q", "--quiet", action="store_true", help="no final state line on stderr")
    add_client_arguments(p)
    p.set_defaults(func=cmd_logs)

    p = subparsers.add_parser("list", help="list your jobs")
    p.add_argument("--state", help="comma-separated states, e.g. queued,running")
    p.add_argument("--limit", type=int, default=1000, help="most jobs to list (default 1000)")
    p.add_argument("--json", action="store_true")
    add_client_arguments(p)
    p.set_defaults(func=cmd_list)

    p = subparsers.add_parser("show", help="every field of a job")
    p.add_argument("id")
    p.add_argument("--json", action="store_true")
    add_client_arguments(p)
    p.set_defaults(func=cmd_show)

    p = subparsers.add_parser("cancel", help="cancel a job")
    p.add_argument("id")
    add_client_arguments(p)
    p.set_defaults(func=cmd_cancel)

    p = subparsers.add_parser("files", help="list the files of a job's run dir")
    p.add_argument("id")
    add_client_arguments(p)
    p.set_defaults(func=cmd_files)

    p = subparsers.add_parser("get", help="download a file of a job's run dir")
    p.add_argument("id")
    p.add_argument("path")
    p.add_argument("-o", "--output", help="where to write it ('-': stdout; default: the file's name)")
    add_client_arguments(p)
    p.set_defaults(func=cmd_get)
