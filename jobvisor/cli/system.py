"""`jobvisor queue`, `jobvisor agents`, `jobvisor status`: the system as the API shows it to
the caller (an admin sees every user's queued jobs and agents).

`queue` and `agents` list when given no action; actions on them (`queue clear`, `agents
cancel`...) are subcommands added to their parsers in `add_parser` (an optional ACTION: the
listing stays the default). An action's parser takes its own client options
(`add_client_arguments`), as argparse lets a subcommand's defaults win over its parent's.
"""

from __future__ import annotations

import argparse
import json

from jobvisor.cli import fmt
from jobvisor.cli.client import add_client_arguments, client_from_args


def _print_json(data: object) -> int:
    print(json.dumps(data, indent=2))
    return 0


# --------------------------------------------------------------------------- queue


def format_queue(queue: dict) -> str:
    """Capacity per driver, then the queued jobs in the order they will start (per driver)."""
    drivers = [[kind, f"{d.get('cpus_used', 0)}/{d.get('cpus_total', 0)}", d.get("queued", 0)]
               for kind, d in sorted(queue.get("drivers", {}).items())]
    jobs = queue.get("jobs", [])
    owners = len({job.get("owner") for job in jobs}) > 1
    rows = [[job.get("driver", ""), job.get("queue_position", ""), job["id"],
             *([job.get("owner", "")] if owners else []), job.get("cpus", "")] for job in jobs]
    headers = ["DRIVER", "POSITION", "ID", *(["OWNER"] if owners else []), "CPUS"]
    return fmt.table(drivers, ["DRIVER", "CPUS USED", "QUEUED"]) + "\n\n" + fmt.table(rows, headers)


def cmd_queue(args: argparse.Namespace) -> int:
    queue = client_from_args(args).call("GET", "/queue")
    return _print_json(queue) if args.json else print(format_queue(queue)) or 0


# --------------------------------------------------------------------------- agents


def format_agents(agents: list[dict]) -> str:
    rows = [[a.get("id", ""), a.get("user", ""), a.get("kind", ""), a.get("state", ""), a.get("jobs", ""),
             a.get("host") or "-", a.get("pid") or "-", fmt.short_time(a.get("connected_at"))]
            for a in agents]
    return fmt.table(rows, ["ID", "USER", "KIND", "STATE", "JOBS", "HOST", "PID", "CONNECTED"])


def cmd_agents(args: argparse.Namespace) -> int:
    agents = client_from_args(args).call("GET", "/agents")
    return _print_json(agents) if args.json else print(format_agents(agents.get("agents", []))) or 0


# --------------------------------------------------------------------------- status


def format_status(status: dict) -> str:
    counts = status.get("counts") or {}
    gateway = status.get("gateway") or {}
    since = f" (since {fmt.local_time(status['started_at'])})" if status.get("started_at") else ""
    lines = [
        f"jobvisor {status.get('version', '?')} (protocol {status.get('protocol_version', '?')}), "
        f"up {fmt.duration(status.get('uptime'))}{since}",
        f"agents   {status.get('agents', 0)}",
        "jobs     " + (", ".join(f"{n} {state}" for state, n in sorted(counts.items())) or "none"),
    ]
    if gateway:
        events = "connected" if gateway.get("events_connected") else "NOT connected"
        lines.append(f"gateway  {gateway.get('version', '?')}, event stream {events}, "
                     f"{gateway.get('event_subscribers', 0)} subscriber(s)")
    for target, facts in sorted((status.get("drivers") or {}).items()):
        if isinstance(facts, dict) and "limits" in facts:  # how the local driver enforces jobs' memory and cpus
            lines.append(f"{target.ljust(8)} memory: {facts.get('memory')}; cpus: {facts.get('cpus')}"
                         + (f" ({facts['why']})" if facts.get("why") else ""))
    known = {"version", "protocol_version", "uptime", "started_at", "agents", "counts", "gateway", "drivers"}
    for key in sorted(k for k in status if k not in known):  # what a newer server adds
        value = status[key]
        lines.append(f"{key.ljust(8)} {json.dumps(value) if isinstance(value, (dict, list)) else value}")
    return "\n".join(lines)


def cmd_status(args: argparse.Namespace) -> int:
    status = client_from_args(args, token_required=False).call("GET", "/status")
    return _print_json(status) if args.json else print(format_status(status)) or 0


# --------------------------------------------------------------------------- parsers


def _listing(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="the API's answer, exact values")
    add_client_arguments(parser)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("queue", help="capacity per driver and the queued jobs, in order",
                              description="Capacity per driver, and your queued jobs (an admin: everyone's) "
                                          "in the order they will start.")
    _listing(p)
    p.set_defaults(func=cmd_queue)
    # actions on the queue (`queue clear`): p.add_subparsers(dest="queue_action", metavar="ACTION") here

    p = subparsers.add_parser("agents", help="the agents running your jobs (an admin: all)")
    _listing(p)
    p.set_defaults(func=cmd_agents)
    # actions on agents (`agents cancel|shutdown`): p.add_subparsers(dest="agents_action", metavar="ACTION") here

    p = subparsers.add_parser("status", help="the server: version, uptime, agents, jobs per state (no token needed)")
    _listing(p)
    p.set_defaults(func=cmd_status)
