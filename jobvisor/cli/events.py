"""`jobvisor events [--follow] [--since ID] [--json]` and `jobvisor events push JSON`.

Without --follow, the events after `--since` (default: every event kept) are read page by page
from `GET /events?format=json` and printed. With --follow, the stream `GET /events?since=ID`
is followed; whenever it ends (a restart, a client too slow, a network drop) the command
reconnects by itself from the last id it printed, so it prints every event once, in order.

Human output is one line per event: its local time, id, kind, what it is about and a summary;
`--json` prints each event as the API gives it, one JSON object per line.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any, Iterator

from jobvisor.cli.client import ApiClient, ApiError, add_client_arguments, client_from_args
from jobvisor.cli.errors import CliError
from jobvisor.cli.fmt import local_time
from jobvisor.cli.resolve import resolve_job
from jobvisor.cli.workflows import resolve_workflow
from jobvisor.limits import MAX_EVENT_ID
from jobvisor.reasons import describe_end
from jobvisor.states import TERMINAL_STATES
from jobvisor.timing import backoff_delay

PAGE = 1000
FOLLOW_IDLE = 40.0  # seconds without a byte (heartbeats come every 15 s) before reconnecting
STREAM_KINDS = frozenset({"transition", "progress", "workflow", "user", "system"})
TERMINAL = frozenset(s.value for s in TERMINAL_STATES)


def summary(event: dict) -> str:
    """What the event says, in a few words."""
    data = event.get("data") or {}
    kind = event.get("kind")
    if kind == "transition":
        state, reason = str(data.get("state")), data.get("reason") or ""
        if state in TERMINAL:
            text = describe_end(state, data.get("exit_code"), reason)
        else:
            text = state + (f": {reason}" if reason and reason != state else "")
        attempt = data.get("attempt")
        return text + (f" (attempt {attempt})" if isinstance(attempt, int) and attempt > 1 else "")
    if kind == "progress":
        fraction = data.get("progress")
        text = f"{round(fraction * 100)}%" if isinstance(fraction, (int, float)) else "-"
        return text + (f" {data['message']}" if data.get("message") else "")
    if kind == "workflow":
        counts = data.get("counts") or {}
        text = f"{data.get('name', '')} {data.get('state', '')}".strip()
        if counts:
            text += " (" + ", ".join(f"{state} {n}" for state, n in sorted(counts.items())) + ")"
        return text + (f": {data['reason']}" if data.get("reason") else "")
    return json.dumps(data, separators=(",", ":"), sort_keys=True)


def format_event(event: dict) -> str:
    about = []
    if event.get("job_id"):
        about.append(f"job {event['job_id']}")
    if event.get("workflow_id"):
        about.append(f"workflow {event['workflow_id']}")
    return "  ".join([local_time(event["at"]), f"#{event['id']}", f"{event['kind']:<10}", *about, summary(event)])


def _print(event: dict, as_json: bool) -> None:
    print(json.dumps(event, separators=(",", ":")) if as_json else format_event(event), flush=True)


def _pruned(since: int) -> None:
    print(f"jobvisor: events after {since} were pruned already; the oldest kept follow", file=sys.stderr, flush=True)


def history(client: ApiClient, since: int, job: str | None) -> Iterator[dict]:
    """Every event after `since`, oldest first, page by page."""
    query: dict[str, Any] = {"format": "json", "limit": PAGE}
    if job:
        query["job"] = job
    while True:
        page = client.call("GET", "/events", query={**query, "since": since})
        if page.get("pruned"):
            _pruned(since)
        yield from page["events"]
        if page["next"] is None:
            return
        since = page["next"]


def follow(client: ApiClient, since: int | None, job: str | None, as_json: bool) -> None:
    """Print the stream forever (after `since`, or from now), reconnecting from the last id
    printed whenever it ends."""
    if since is None:  # from now on: where the live stream starts
        since = client.call("GET", "/events", query={"format": "json", "since": MAX_EVENT_ID, "limit": 1})["last_id"]
    last = since
    failures = 0
    while True:
        query: dict[str, Any] = {"since": last}
        if job:
            query["job"] = job
        try:
            with client.events("/events", query=query, idle_timeout=FOLLOW_IDLE) as stream:
                failures = 0
                for kind, event, _ in stream:
                    if kind in STREAM_KINDS and event["id"] > last:
                        _print(event, as_json)
                        last = event["id"]
                    elif kind == "pruned":
                        _pruned(event.get("since", last))
                    elif kind == "reconnect":
                        last = max(last, event.get("last_id") or 0)
                        break
        except ApiError as exc:
            if exc.http_status in (400, 401, 403, 404):
                raise
            failures += 1
        except (CliError, TimeoutError, OSError, ValueError):
            failures += 1  # the gateway is down or restarting: try again
        time.sleep(backoff_delay(failures, base=0.2, cap=5.0) if failures else 0.05)


def newest(client: ApiClient, count: int, job: str | None) -> list[dict]:
    """The newest `count` events the caller sees, oldest first. Ids are shared by every user's
    events, so the window read grows from the newest id back until it holds enough."""
    last_id = client.call("GET", "/events", query={"format": "json", "since": MAX_EVENT_ID, "limit": 1})["last_id"]
    window = count
    while True:
        since = max(0, last_id - window)
        found = [e for e in history(client, since, job) if e["id"] <= last_id]
        if len(found) >= count or since == 0:
            return found[-count:] if count else []
        window *= 4


def cmd_events(args: argparse.Namespace) -> int:
    client = client_from_args(args)
    since = args.since
    job_id = resolve_job(client, args.job) if args.job else None
    if args.last is not None:
        if since is not None:
            raise CliError("--last and --since say different things: give one", status=2)
        shown = newest(client, args.last, job_id)
        for event in shown:
            _print(event, args.json)
        if not args.follow:
            return 0
        since = shown[-1]["id"] if shown else None
    if args.follow:
        follow(client, since, job_id, args.json)
        return 0
    for event in history(client, since or 0, job_id):
        _print(event, args.json)
    return 0


def cmd_push(args: argparse.Namespace) -> int:
    try:
        data = json.loads(args.data)
    except json.JSONDecodeError as exc:
        raise CliError(f"the event must be a JSON object: {exc}", status=2) from None
    if not isinstance(data, dict):
        raise CliError("the event must be a JSON object, e.g. '{\"step\": \"mesh\"}'", status=2)
    client = client_from_args(args)
    body: dict[str, Any] = {"data": data}
    if args.job:
        body["job_id"] = resolve_job(client, args.job)
    if args.workflow:
        body["workflow_id"] = resolve_workflow(client, args.workflow)
    event = client.call("POST", "/events", body=body)
    print(json.dumps(event) if args.json else event["id"])
    return 0


def _since(value: str) -> int:
    if not value.isdigit():
        raise argparse.ArgumentTypeError(f"an event id (a whole number from 0), not {value!r}")
    return int(value)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "events", help="your events (admins: everyone's): job transitions and progress, workflows, pushed events",
        description="Print the events after --since (default: every event kept), or with --follow the live stream "
                    "(from --since if given), reconnecting by itself without losing or repeating an event.")
    p.add_argument("--follow", "-f", action="store_true", help="follow the live stream until interrupted")
    p.add_argument("--since", type=_since, metavar="ID", help="only events after this id")
    p.add_argument("--last", type=_since, metavar="N", help="only the newest N events (then the live ones with --follow)")
    p.add_argument("--job", metavar="JOB", help="only this job's events (its id, a unique id prefix or a unique name)")
    p.add_argument("--json", action="store_true", help="one JSON object per line, as the API gives them")
    add_client_arguments(p)
    p.set_defaults(func=cmd_events)
    actions = p.add_subparsers(dest="events_command", metavar="ACTION")
    push = actions.add_parser("push", help="push an event of your own; prints its id",
                              description="Push a user event (a JSON object), about one of your jobs or workflows "
                                          "if named. Every stream of yours (and admins') carries it.")
    push.add_argument("data", metavar="JSON", help="the event's data, a JSON object")
    push.add_argument("--job", metavar="JOB", help="one of your jobs it is about (its id, a unique id prefix or a unique name)")
    push.add_argument("--workflow", metavar="WF", help="one of your workflows it is about: its id, a unique id prefix, or its name")
    push.add_argument("--json", action="store_true", help="print the whole event, not only its id")
    add_client_arguments(push)
    push.set_defaults(func=cmd_push)
