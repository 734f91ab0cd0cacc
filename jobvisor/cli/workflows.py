"""`jobvisor workflow ...`: publish a workflow document, list, show, execute, watch its jobs,
cancel, delete, and its history of versions (the /workflows routes).

`workflow status ID --watch` follows a run until it ends: on a terminal it redraws a table of
the jobs in place; otherwise (a pipe, a log file) it prints one line per job that changed.
Its exit status is 0 when the workflow completed, 1 when it failed or was canceled, as `wait`.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from jobvisor.cli.client import ApiClient, ApiError, RawBody, add_client_arguments, client_from_args
from jobvisor.cli.errors import CliError
from jobvisor.cli.resolve import USAGE, fetch_pages
from jobvisor.cli.fmt import local_time, table as format_table

YAML_SUFFIXES = (".yaml", ".yml")
ENDED = frozenset({"completed", "failed", "canceled"})  # a workflow's ended states
# in a table too long for the terminal, the jobs that matter now come first
STATE_ORDER = ("running", "starting", "queued", "failed", "timed_out", "lost", "canceled", "waiting", "completed")
VIEW_ORDER = ("id", "name", "owner", "version", "state", "reason", "on_failure", "run", "jobs_total", "counts",
              "created_at", "updated_at", "started_at", "finished_at")
TIME_KEYS = frozenset({"created_at", "updated_at", "started_at", "finished_at"})


# --------------------------------------------------------------------------- reading a document


def read_document(path: str) -> RawBody:
    """The file's bytes with their content type: YAML by its suffix (.yaml, .yml), else JSON.
    `-` reads stdin (JSON, or YAML when it does not start with `{`)."""
    if path == "-":
        data = sys.stdin.buffer.read()
        yaml = not data.lstrip().startswith(b"{")
    else:
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise CliError(f"cannot read the workflow document {path}: {exc.strerror or exc}") from None
        yaml = Path(path).suffix.lower() in YAML_SUFFIXES
    if not data.strip():
        raise CliError(f"the workflow document {path} is empty")
    return RawBody(data, "application/yaml" if yaml else "application/json")


# --------------------------------------------------------------------------- rendering (pure)


def format_counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{state} {n}" for state, n in sorted(counts.items(), key=lambda kv: _rank(kv[0]))) or "-"


def _rank(state: str | None) -> int:
    return STATE_ORDER.index(state) if state in STATE_ORDER else len(STATE_ORDER)


def _progress(value: Any) -> str:
    return f"{value * 100:.0f}%" if isinstance(value, (int, float)) else ""


def job_rows(jobs: list[dict]) -> list[list[str]]:
    return [[j.get("name", ""), j.get("state") or "-", _progress(j.get("progress")), j.get("job_id") or "-",
             j.get("reason") or ""] for j in jobs]


JOB_HEADERS = ["JOB", "STATE", "PROGRESS", "ID", "REASON"]


def jobs_of(view: dict) -> list[dict]:
    """The view's jobs in the document's order (the order its author wrote them in)."""
    jobs = list(view.get("jobs") or [])
    order = {job.get("name"): i for i, job in enumerate((view.get("document") or {}).get("jobs") or [])}
    return sorted(jobs, key=lambda job: order.get(job.get("name"), len(order)))


def render_status(view: dict, max_rows: int | None = None) -> list[str]:
    """The lines of a workflow's live table: a summary, then one row per job. With `max_rows`,
    the jobs that matter now (running, queued, failed...) are kept and the rest counted."""
    lines = [f"workflow {view.get('name', '')} ({view['id']}) run {view.get('run', 0)}: {view['state']}"
             + (f" - {view['reason']}" if view.get("reason") else ""),
             f"jobs: {format_counts(view.get('counts') or {})}"]
    jobs = jobs_of(view)
    hidden = 0
    if max_rows is not None and len(jobs) > max(1, max_rows - len(lines) - 1):
        room = max(1, max_rows - len(lines) - 2)
        keep = sorted(range(len(jobs)), key=lambda i: (_rank(jobs[i].get("state")), i))[:room]
        hidden = len(jobs) - len(keep)
        jobs = [jobs[i] for i in sorted(keep)]
    if jobs:
        lines.extend(format_table(job_rows(jobs), JOB_HEADERS).splitlines())
    if hidden:
        lines.append(f"... and {hidden} more jobs")
    return lines


def changed_lines(before: dict[str, tuple], view: dict) -> tuple[list[str], dict[str, tuple]]:
    """For plain output: one line per job whose state (or progress) changed since `before`."""
    now: dict[str, tuple] = {}
    lines = []
    for job in jobs_of(view):
        key = (job.get("state"), _progress(job.get("progress")), job.get("job_id"))
        now[job["name"]] = key
        if before.get(job["name"]) != key:
            state, progress, job_id = key
            text = f"{job['name']}: {state or 'not run'}" + (f" {progress}" if progress else "")
            text += f" ({job_id})" if job_id else ""
            if job.get("reason") and state not in (None, "running", "completed"):
                text += f" - {job['reason']}"
            lines.append(text)
    return lines, now


def format_workflow(view: dict) -> str:
    """`show`'s text: the workflow's fields (times in local time), then its jobs' table."""
    keys = [k for k in VIEW_ORDER if k in view] + sorted(k for k in view if k not in VIEW_ORDER and k not in ("jobs", "document"))
    width = max(len(k) for k in keys)
    lines = []
    for key in keys:
        value = view[key]
        if key == "counts":
            value = format_counts(value or {})
        elif isinstance(value, (dict, list)):
            value = json.dumps(value, sort_keys=True)
        elif value is None or value == "":
            value = "-"
        elif key in TIME_KEYS:
            value = local_time(value)
        lines.append(f"{key.ljust(width)}  {value}")
    jobs = jobs_of(view)
    if jobs:
        lines.append("")
        lines.append(format_table(job_rows(jobs), JOB_HEADERS))
    return "\n".join(lines)


# --------------------------------------------------------------------------- naming a workflow

FULL_ID = re.compile(r"^w[0-9a-z]{20}$")  # a workflow id (jobvisor.ids' sortable ids): used as it is
SHOWN = 5  # candidates listed in an ambiguity error


def fetch_workflows(client: ApiClient, limit: int) -> list[dict]:
    """Up to `limit` of the caller's workflows (an admin's: everyone's), newest first."""
    return fetch_pages(client, "/workflows", "workflows", limit)


def resolve_workflow(client: ApiClient, ref: str) -> str:
    """The id of the one workflow `ref` names: its id, a unique prefix of its id, or its name
    (names are unique per owner; an admin sees everyone's). A usage error (status 2) when none
    or several match, listing the candidates."""
    if FULL_ID.match(ref):
        return ref
    found = [w for w in fetch_workflows(client, 100_000) if w["name"] == ref or w["id"].startswith(ref.lower())]
    if len(found) == 1:
        return found[0]["id"]
    if not found:
        raise CliError(f"no workflow has the id prefix or name {ref!r}", status=USAGE)
    lines = "\n  ".join(f"{w['id']} ({w['name']}) {w['state']}, owner {w['owner']}" for w in found[:SHOWN])
    more = " ..." if len(found) > SHOWN else ""
    raise CliError(f"{ref!r} names more than one workflow; use a longer prefix or the full id:\n  {lines}{more}",
                   status=USAGE)


def _named(args: argparse.Namespace) -> tuple[ApiClient, str]:
    """The client, and the id of the workflow the command names."""
    client = client_from_args(args)
    return client, resolve_workflow(client, args.id)


# --------------------------------------------------------------------------- commands


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2))


def cmd_submit(args: argparse.Namespace) -> int:
    body = read_document(args.file)
    query = {"execute": "true" if args.execute else None, "message": args.message}
    view = client_from_args(args).call("POST", "/workflows", query=query, body=body)
    print(view["id"])
    print(f"{view['name']} version {view['version']}: {view['state']}", file=sys.stderr)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    workflows = fetch_workflows(client_from_args(args), args.limit)
    if args.json:
        _print_json(workflows)
        return 0
    rows = [[w["id"], w["name"], w["version"], w["state"], w.get("jobs_total", ""), w.get("run", 0),
             format_counts(w.get("counts") or {}), local_time(w["updated_at"]) if w.get("updated_at") else ""]
            for w in workflows]
    if rows:
        print(format_table(rows, ["ID", "NAME", "VERSION", "STATE", "JOBS", "RUN", "COUNTS", "UPDATED"]))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    client, workflow_id = _named(args)
    view = client.call("GET", f"/workflows/{workflow_id}")
    if args.json:
        _print_json(view)
    else:
        print(format_workflow(view))
        if args.document:
            print()
            print(json.dumps(view.get("document"), indent=2))
    return 0


def cmd_execute(args: argparse.Namespace) -> int:
    client, workflow_id = _named(args)
    view = client.call("POST", f"/workflows/{workflow_id}/execute")
    print(f"{view['id']} run {view['run']}: {view['state']}")
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    client, workflow_id = _named(args)
    view = client.call("POST", f"/workflows/{workflow_id}/cancel")
    # its started jobs end when their agents have stopped them, a moment after this answer
    print(f"{view['id']} {view['state'] if view['state'] in ENDED else 'canceling'}")
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    client, workflow_id = _named(args)
    reply = client.call("DELETE", f"/workflows/{workflow_id}", query={"force": "true" if args.force else None})
    print(f"{reply['id']} deleted")
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    client, workflow_id = _named(args)
    versions = client.call("GET", f"/workflows/{workflow_id}/history")["versions"]
    if args.json:
        _print_json(versions)
        return 0
    rows = [[v["version"], local_time(v["created_at"]), v["author"], v["sha256"][:12], v.get("message") or ""]
            for v in versions]
    if rows:
        print(format_table(rows, ["VERSION", "PUBLISHED", "AUTHOR", "SHA256", "MESSAGE"]))
    return 0


class LiveTable:
    """Redraws a block of lines in place on a terminal (cursor up, clear to the end)."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.height = 0

    def draw(self, lines: list[str]) -> None:
        width = shutil.get_terminal_size().columns
        if self.height:
            self.out.write(f"\x1b[{self.height}F\x1b[J")
        self.out.write("".join(line[:width] + "\n" for line in lines))
        self.out.flush()
        self.height = len(lines)


def cmd_status(args: argparse.Namespace) -> int:
    client, workflow_id = _named(args)
    if args.watch:
        return watch(client, workflow_id, args.interval, sys.stdout)
    if args.json:  # the status route's answer: counts, each job's state, started and finished times
        _print_json(client.call("GET", f"/workflows/{workflow_id}/status"))
    else:
        print("\n".join(render_status(client.call("GET", f"/workflows/{workflow_id}"))))
    return 0


def _look(client: ApiClient, workflow_id: str, interval: float, warned: list[bool]) -> dict:
    """The workflow now; a gateway that is down or restarting is asked again (said once on
    stderr), while an answer about the workflow itself (404, 403) ends the watch."""
    while True:
        try:
            view = client.call("GET", f"/workflows/{workflow_id}")
        except ApiError as exc:
            if exc.http_status < 500:
                raise
            problem = str(exc)
        except CliError as exc:  # the gateway cannot be reached
            problem = str(exc)
        else:
            warned[0] = False
            return view
        if not warned[0]:
            print(f"jobvisor: {problem}; trying again every {interval:g} s", file=sys.stderr)
            warned[0] = True
        time.sleep(interval)


def watch(client: ApiClient, workflow_id: str, interval: float, out: TextIO) -> int:
    """Follow the workflow until it is no longer running; 0 if it completed."""
    live = LiveTable(out) if out.isatty() else None
    seen: dict[str, tuple] = {}
    warned = [False]
    while True:
        view = _look(client, workflow_id, interval, warned)
        if live is not None:
            live.draw(render_status(view, shutil.get_terminal_size().lines - 1))
        else:
            lines, seen = changed_lines(seen, view)
            stamp = time.strftime("%H:%M:%S")
            for line in lines:
                out.write(f"{stamp} {line}\n")
            out.flush()
        if view["state"] != "running":
            if live is None:
                out.write(f"workflow {view['id']} {view['state']}: {format_counts(view.get('counts') or {})}\n")
                out.flush()
            return 0 if view["state"] == "completed" else 1
        time.sleep(interval)


# --------------------------------------------------------------------------- parsers


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    workflow = subparsers.add_parser("workflow", help="publish, run and watch workflows (DAGs of jobs)",
                                     description="Workflows: graphs of jobs that depend on each other.")
    actions = workflow.add_subparsers(dest="workflow_command", metavar="ACTION", required=True)

    def action(name: str, help: str, func, *, with_id: bool = True) -> argparse.ArgumentParser:
        p = actions.add_parser(name, help=help, description=help[0].upper() + help[1:] + ".")
        if with_id:
            p.add_argument("id", metavar="WORKFLOW", help="the workflow: its id, a unique id prefix, or its name")
        add_client_arguments(p)
        p.set_defaults(func=func)
        return p

    p = action("submit", "publish a workflow document (a new name, or the next version of one you have); prints its id",
               cmd_submit, with_id=False)
    p.add_argument("file", metavar="FILE", help="the document: JSON, or YAML (.yaml, .yml); - reads stdin")
    p.add_argument("--execute", action="store_true", help="start a run at once")
    p.add_argument("-m", "--message", help="what this version changes (kept in its history)")

    p = action("list", "list your workflows (admins: all), newest first", cmd_list, with_id=False)
    p.add_argument("--limit", type=int, default=1000, help="most workflows to list (default 1000)")
    p.add_argument("--json", action="store_true")

    p = action("show", "a workflow's fields and its jobs", cmd_show)
    p.add_argument("--json", action="store_true")
    p.add_argument("--document", action="store_true", help="print the current version's document too")

    action("execute", "start a new run of a workflow", cmd_execute)

    p = action("status", "the jobs of a workflow's run, with state and progress", cmd_status)
    p.add_argument("-w", "--watch", action="store_true",
                   help="follow the run until it ends (a live table on a terminal, one line per change otherwise); "
                        "exit 0 if it completed")
    p.add_argument("--interval", type=float, default=1.0, help="seconds between two looks while watching (default 1)")
    p.add_argument("--json", action="store_true")

    action("cancel", "cancel a workflow's run (its unfinished jobs)", cmd_cancel)

    p = action("delete", "delete a workflow and its versions (its jobs stay)", cmd_delete)
    p.add_argument("--force", action="store_true", help="cancel a running run first (else a running workflow is refused)")

    p = action("history", "the versions published so far", cmd_history)
    p.add_argument("--json", action="store_true")
