"""`jobvisor timer add|list|rm`, `jobvisor queue clear` and `jobvisor agents cancel|shutdown`.

`queue` and `agents` may be commands of another module too (their listings): this one adds
its actions to the command that exists, or makes the command when none does, so it must come
after those modules in `jobvisor.cli.main.COMMAND_MODULES`.
"""

from __future__ import annotations

import argparse
import json
import sys

from jobvisor.cli.client import add_client_arguments, client_from_args
from jobvisor.cli.errors import CliError
from jobvisor.cli.resolve import USAGE, fetch_pages
from jobvisor.cli.fmt import duration, local_time, table as format_table
from jobvisor.cli.workflows import resolve_workflow


def command(subparsers: argparse._SubParsersAction, name: str, help: str) -> argparse.ArgumentParser:
    """The command `name`, as another module made it, or a new one."""
    existing = subparsers.choices.get(name)
    return existing if existing is not None else subparsers.add_parser(name, help=help)


def actions_of(parser: argparse.ArgumentParser, dest: str) -> argparse._SubParsersAction:
    """The parser's actions (subcommands), made if it has none. A command with a function of
    its own (a listing) keeps it when no action is given."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    has_own = parser.get_default("func") is not None
    return parser.add_subparsers(dest=dest, metavar="ACTION", required=not has_own)


def _when(value: str | None) -> str:
    return local_time(value) if value else "-"


# --------------------------------------------------------------------------- timers


def cmd_timer_add(args: argparse.Namespace) -> int:
    client = client_from_args(args)
    body = {"workflow_id": resolve_workflow(client, args.workflow), "at": args.at, "every": args.every, "cron": args.cron}
    timer = client.call("POST", "/timers", body={k: v for k, v in body.items() if v is not None})
    print(timer["id"])
    return 0


def describe_schedule(timer: dict) -> str:
    if timer["kind"] == "at":
        return f"at {_when(timer['at'])}"
    if timer["kind"] == "every":
        return f"every {duration(timer['every'])}"
    return f"cron {timer['cron']}"


def cmd_timer_list(args: argparse.Namespace) -> int:
    client = client_from_args(args)
    timers = client.call("GET", "/timers")["timers"]
    if args.json:
        print(json.dumps(timers, indent=2))
        return 0
    names = {w["id"]: w["name"] for w in fetch_pages(client, "/workflows", "workflows", sys.maxsize)} if timers else {}
    rows = [[t["id"], names.get(t["workflow_id"], t["workflow_id"]), describe_schedule(t), _when(t["next_at"]),
             _when(t["last_at"]),
             (t["last_outcome"] or "-") + (f": {t['last_reason']}" if t["last_outcome"] and t["last_outcome"] != "executed" else "")]
            for t in timers]
    print(format_table(rows, ["ID", "WORKFLOW", "SCHEDULE", "NEXT", "LAST", "LAST OUTCOME"]))  # a header even when empty
    return 0


def cmd_timer_rm(args: argparse.Namespace) -> int:
    client = client_from_args(args)
    for timer_id in args.ids:
        client.call("DELETE", f"/timers/{timer_id}")
        print(f"{timer_id} deleted")
    return 0


# --------------------------------------------------------------------------- queue and agents


def cmd_queue_clear(args: argparse.Namespace) -> int:
    if args.user and args.all_users:
        raise CliError("--user and --all-users say different things: give one", status=USAGE)
    client = client_from_args(args)
    user = None if args.all_users else args.user or client.call("GET", "/whoami")["user"]
    reply = client.call("POST", "/queue/clear", query={"user": user})
    whose = "every user's" if reply.get("all_users") else f"{reply.get('user')}'s"
    print(f"canceled {reply['canceled']} of {whose} queued and waiting jobs")
    return 0


def cmd_agent_action(args: argparse.Namespace) -> int:
    reply = client_from_args(args).call("POST", f"/agents/{args.id}/{args.agent_action}")
    agent = reply["agent"]
    print(f"agent {agent['id']} of {agent['user']} ({agent['kind']}): {agent['state']}, "
          f"{reply['canceled']} jobs canceled")
    return 0


# --------------------------------------------------------------------------- parsers


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    timer = subparsers.add_parser("timer", help="execute a workflow at a time, every interval or on a cron expression",
                                  description="Timers execute a workflow. Times are UTC unless they name a zone.")
    timer_actions = timer.add_subparsers(dest="timer_command", metavar="ACTION", required=True)
    p = timer_actions.add_parser("add", help="add a timer; prints its id",
                                 description="Add a timer that executes a workflow. A firing while the workflow still "
                                             "runs is skipped; firings missed while jobvisor was down are caught up once.")
    p.add_argument("workflow", metavar="WORKFLOW", help="the workflow to execute: its id, a unique id prefix, or its name")
    when = p.add_mutually_exclusive_group(required=True)
    when.add_argument("--at", help="once, at this ISO 8601 time (e.g. 2026-12-24T18:00:00Z)")
    when.add_argument("--every", help="every interval: seconds, or units d h m s (e.g. 1h30m)")
    when.add_argument("--cron", help="on a 5-field cron expression in UTC (e.g. '0 3 * * mon-fri'), or @daily...")
    add_client_arguments(p)
    p.set_defaults(func=cmd_timer_add)
    p = timer_actions.add_parser("list", help="list your timers (admins: all)")
    p.add_argument("--json", action="store_true")
    add_client_arguments(p)
    p.set_defaults(func=cmd_timer_list)
    p = timer_actions.add_parser("rm", help="delete timers")
    p.add_argument("ids", nargs="+", metavar="ID")
    add_client_arguments(p)
    p.set_defaults(func=cmd_timer_rm)

    queue = command(subparsers, "queue", "the queue")
    p = actions_of(queue, "queue_command").add_parser(
        "clear", help="cancel your queued and waiting jobs (admins: --user's, or --all-users')")
    p.add_argument("--user", help="admins: this user's jobs instead of yours")
    p.add_argument("--all-users", dest="all_users", action="store_true", help="admins: every user's jobs")
    add_client_arguments(p)
    p.set_defaults(func=cmd_queue_clear)

    agents = command(subparsers, "agents", "agents")
    agent_actions = actions_of(agents, "agents_command")
    for name, help in (("cancel", "cancel every job of an agent (yours, or any for admins)"),
                       ("shutdown", "cancel an agent's jobs and stop it; a new one starts when needed")):
        p = agent_actions.add_parser(name, help=help)
        p.add_argument("id", help="agent id (see GET /agents)")
        add_client_arguments(p)
        p.set_defaults(func=cmd_agent_action, agent_action=name)
