"""`jobvisor list` (a table of jobs, or JSON, or ids; `--watch` keeps it up to date) and
`jobvisor show` (one job for a person: local times, sizes, durations, its history as a
timeline). `--json` gives the API's exact values instead."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from datetime import datetime, tzinfo
from typing import Any

from jobvisor.cli import fmt
from jobvisor.cli.client import ApiClient, add_client_arguments, client_from_args
from jobvisor.cli.resolve import array_of, fetch_jobs, resolve_job
from jobvisor.job_arrays import format_array
from jobvisor.reasons import exit_reason

NAME_WIDTH = 32
DETAIL_WIDTH = 60
FORMATS = ("table", "json", "ids")


# --------------------------------------------------------------------------- list


def detail(job: dict) -> str:
    """The EXIT/REASON cell: the exit code of an ended run, and why, where the state alone does
    not say it (a completed job's reason is its exit; a queued one shows its place)."""
    state = job.get("state", "")
    code = job.get("exit_code")
    reason = job.get("reason") or ""
    parts = []
    shown_reason = (bool(reason) and state != "completed" and reason not in (state, f"exit code {code}")
                    and not reason.startswith("submitted"))  # a queued job's first reason: nothing to add
    # the signal that stopped a canceled or timed-out job was the cancel's or the walltime's
    if code is not None and not (code < 0 and state in ("canceled", "timed_out")):
        exit_text = exit_reason(code)
        if not (shown_reason and exit_text in reason):  # said once
            parts.append(exit_text)
    if state == "queued" and job.get("queue_position") is not None:
        parts.append(f"#{job['queue_position']} in queue")
    elif state == "queued" and job.get("array_cap"):  # held out of the queue by its array's %N
        parts.append(f"waits: at most {job['array_cap']} of its array at once")
    if shown_reason:
        parts.append(reason)
    return fmt.clip(", ".join(parts), DETAIL_WIDTH)


def job_label(job: dict) -> str:
    """The NAME column: the job's name or what it runs, and an array element's index
    (`sweep[3]`, as Slurm's `%a`), which is never clipped away."""
    index = job.get("array_index")
    suffix = f"[{index}]" if index is not None else ""
    return fmt.clip(job.get("name") or fmt.command_summary(job), NAME_WIDTH - len(suffix)) + suffix


def job_rows(jobs: list[dict], *, owners: bool, tz: tzinfo | None = None,
             now: datetime | None = None) -> tuple[list[str], list[list[str]]]:
    """The table of `list`: headers and one row per job, except that the queued elements of a
    job array share one row (`sweep[5-100%10]`, as squeue shows a pending array): an array of
    thousands reads as one line until its elements start."""
    headers = ["ID", *(["OWNER"] if owners else []), "NAME", "STATE", "PROGRESS", "SUBMITTED", "RUN TIME", "EXIT/REASON"]
    waiting: dict[str, list[dict]] = {}
    for job in jobs:
        if job.get("state") == "queued" and job.get("array_id"):
            waiting.setdefault(job["array_id"], []).append(job)
    rows = []
    for job in jobs:
        group = waiting.get(job.get("array_id") or "") if job.get("state") == "queued" else None
        if group is not None and len(group) > 1:
            if job is group[0]:
                rows.append(_array_row(group, owners, tz, now))
            continue
        rows.append([
            job["id"], *([job.get("owner", "")] if owners else []),
            job_label(job),
            job.get("state", ""),
            fmt.percent(job.get("progress")) if job.get("progress") is not None else "",
            fmt.short_time(job.get("created_at"), tz, now),
            fmt.duration(fmt.run_time(job, now)) if job.get("started_at") else "",
            detail(job),
        ])
    return headers, rows


def _array_row(group: list[dict], owners: bool, tz: tzinfo | None, now: datetime | None) -> list[str]:
    first = group[0]
    cap = first.get("array_cap") or 0
    indexes = format_array(sorted(j["array_index"] for j in group), cap)
    name = fmt.clip(first.get("name") or fmt.command_summary(first), NAME_WIDTH // 2)
    return [first["array_id"], *([first.get("owner", "")] if owners else []),
            name + "[" + fmt.clip(indexes, NAME_WIDTH - len(name) - 2) + "]", "queued", "",
            fmt.short_time(first.get("created_at"), tz, now), "",
            f"{len(group)} elements" + (f", at most {cap} at once" if cap else "")]


def render_list(jobs: list[dict], output: str, tz: tzinfo | None = None, now: datetime | None = None,
                *, owners: bool | None = None) -> str:
    """`owners`: show the OWNER column (an admin's list); None: when the jobs have several."""
    if output == "json":
        return json.dumps(jobs, indent=2)
    if output == "ids":
        return "\n".join(job["id"] for job in jobs)
    if owners is None:
        owners = len({job.get("owner") for job in jobs}) > 1
    headers, rows = job_rows(jobs, owners=owners, tz=tz, now=now)
    return fmt.table(rows, headers)


def cmd_list(args: argparse.Namespace) -> int:
    client = client_from_args(args)
    output = "json" if args.json else args.format
    array = array_of(client, args.array) if args.array else None
    owners = bool(client.call("GET", "/whoami").get("admin")) if output == "table" else False
    if not args.watch:
        jobs = fetch_jobs(client, args.state, args.limit + 1, args.name, array)
        text = render_list(jobs[:args.limit], output, owners=owners)
        if text:
            print(text)
        if len(jobs) > args.limit:  # a cut list says so, where a pipe does not read it
            print(f"jobvisor: the newest {args.limit} jobs shown; there are more (--limit N, or filter with "
                  f"--state, --name, --array)", file=sys.stderr)
        return 0
    return _watch(client, args, output, array, owners)


def _watch(client: ApiClient, args: argparse.Namespace, output: str, array: str | None, owners: bool) -> int:
    """Redraw in place on a terminal; elsewhere print each new version of the list once,
    under a line with the time, so a log of it reads in order. Ends with Ctrl-C."""
    tty = sys.stdout.isatty()
    last = None
    try:
        while True:
            text = render_list(fetch_jobs(client, args.state, args.limit, args.name, array), output, owners=owners)
            if tty:
                stamp = datetime.now().strftime("%H:%M:%S")
                sys.stdout.write(f"\x1b[H\x1b[2J{stamp}  every {args.interval:g} s (Ctrl-C ends)\n{text}\n")
                sys.stdout.flush()
            elif text != last:
                print(f"-- {datetime.now().strftime('%H:%M:%S')}")
                if text:
                    print(text)
                sys.stdout.flush()
            last = text
            time.sleep(args.interval)
    except KeyboardInterrupt:
        return 0


# --------------------------------------------------------------------------- show


SKIP = frozenset({"history", "params", "resources", "progress", "progress_message", "queue_position",
                  "array_id", "array_index", "array_cap"})
FIRST = ("id", "name", "array", "owner", "state", "reason", "exit_code", "code", "command", "driver", "resources",
         "attempt", "max_retries", "queue_position", "progress", "created_at", "started_at", "finished_at",
         "run time", "agent_id", "result", "info", "params")
TIME_KEYS = frozenset({"created_at", "started_at", "finished_at"})


def _value(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    return "-" if value is None or value == "" else str(value)


def format_history(history: list[dict], tz: tzinfo | None = None) -> list[str]:
    """The transitions as a timeline, oldest first: when (local time), how long after the one
    before, the attempt (a retry starts a new one), the state, why."""
    states = [str(h.get("state", "")) for h in history]
    width = max((len(s) for s in states), default=0)
    times = [fmt.to_local(h.get("at"), tz) for h in history]
    one_day = len({t.date() for t in times if t}) == 1  # the date is then `created_at`'s: time of day
    whens = [("-" if t is None else t.strftime("%H:%M:%S.%f")[:-3] if one_day else t.isoformat(sep=" ", timespec="milliseconds"))
             for t in times]
    gaps = [""] + [f"+{fmt.duration((b - a).total_seconds())}" if a and b else "" for a, b in zip(times, times[1:])]
    gap_width = max(len(g) for g in gaps) if gaps else 0
    lines = []
    for entry, when, gap, state in zip(history, whens, gaps, states):
        lines.append(f"  {when}  {gap.rjust(gap_width)}  #{entry.get('attempt', '-')}  {state.ljust(width)}  "
                     f"{entry.get('reason') or ''}".rstrip())
    return lines


def format_job(job: dict, tz: tzinfo | None = None, now: datetime | None = None) -> str:
    """`show`'s text: one `key  value` line per field, for a person (times in local time,
    memory as 2G, walltime as 01:30:00), then the history as a timeline."""
    fields: dict[str, str] = {}
    for key, value in job.items():
        if key in SKIP:
            continue
        fields[key] = fmt.local_time(value, tz) if key in TIME_KEYS and value is not None else _value(value)
    if job.get("code") in ("shell", "python"):
        fields["command"] = fmt.command_summary(job)
    if "resources" in job:
        fields["resources"] = fmt.resources(job.get("resources"))
    params = job.get("params")
    if "params" in job and not (job.get("code") == "shell" and isinstance(params, dict) and set(params) == {"argv"}):
        fields["params"] = _value(params)  # what `command` does not already say
    if job.get("env"):
        fields["env"] = " ".join(shlex.quote(f"{k}={v}") for k, v in sorted(job["env"].items()))
    if job.get("inputs"):
        fields["inputs"] = ", ".join(f"{i['path']} ({fmt.memory(i['size'])})" for i in job["inputs"])
    if job.get("array_id"):  # one line, as list's NAME[3] says it
        cap = f", at most {job['array_cap']} at once" if job.get("array_cap") else ""
        fields["array"] = f"element {job.get('array_index')} of {job['array_id']}{cap}"
    info = job.get("info") if isinstance(job.get("info"), dict) else {}
    if "max_rss" in info or "cpu_seconds" in info:  # what its process used, as sacct's MaxRSS and CPUTime
        fields["usage"] = (f"max memory {fmt.memory(info.get('max_rss'))}, "
                           f"cpu time {fmt.duration(info.get('cpu_seconds'))}")
    if job.get("retry_on"):
        fields["retry_on"] = ", ".join(job["retry_on"])
    if job.get("queue_position") is not None:
        fields["queue_position"] = str(job["queue_position"])
    if job.get("progress") is not None:
        message = job.get("progress_message") or ""
        fields["progress"] = fmt.percent(job["progress"]) + (f" {message}" if message else "")
    if job.get("started_at"):
        fields["run time"] = fmt.duration(fmt.run_time(job, now)) + ("" if job.get("finished_at") else " (so far)")
    keys = [k for k in FIRST if k in fields] + sorted(k for k in fields if k not in FIRST)
    width = max(len(k) for k in keys) if keys else 0
    lines = [f"{key.ljust(width)}  {fields[key]}" for key in keys]
    history = job.get("history")
    if isinstance(history, list):
        lines.append("history" + ("" if history else "  -"))
        lines.extend(format_history(history, tz))
    return "\n".join(lines)


def cmd_show(args: argparse.Namespace) -> int:
    client = client_from_args(args)
    job = client.call("GET", f"/jobs/{resolve_job(client, args.id)}")
    print(json.dumps(job, indent=2) if args.json else format_job(job))
    return 0


# --------------------------------------------------------------------------- parsers


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "list", help="list your jobs (an admin: everyone's)",
        description="Your jobs, newest first (an admin sees everyone's, with an OWNER column). NAME is the "
                    "job's name, or what it runs; RUN TIME is its current attempt's; EXIT/REASON says how "
                    "it ended, or why it waits. Times are local.",
    )
    p.add_argument("--state", help="comma-separated states, e.g. queued,running")
    p.add_argument("--name", help="only jobs of this name")
    p.add_argument("--array", metavar="ARRAY", help="only the jobs of this job array (the id submit --array printed)")
    p.add_argument("--limit", type=int, default=1000, help="most jobs to list (default 1000)")
    p.add_argument("--format", choices=FORMATS, default="table",
                   help="table (default), json (the API's job objects) or ids (one per line)")
    p.add_argument("--json", action="store_true", help="same as --format json")
    p.add_argument("-w", "--watch", action="store_true",
                   help="keep listing until Ctrl-C: redrawn in place on a terminal, else printed when it changes")
    p.add_argument("--interval", type=float, default=2.0, help="seconds between two reads with --watch (default 2)")
    add_client_arguments(p)
    p.set_defaults(func=cmd_list)

    p = subparsers.add_parser("show", help="every field of a job, and its history",
                              description="A job for a person: local times, memory as 2G, walltime as "
                                          "01:30:00, its history as a timeline. --json: the API's object.")
    p.add_argument("id", metavar="JOB", help="job id, unique id prefix or unique name")
    p.add_argument("--json", action="store_true", help="the API's job object, exact values")
    add_client_arguments(p)
    p.set_defaults(func=cmd_show)
