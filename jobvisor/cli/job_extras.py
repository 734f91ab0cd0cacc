"""Job arrays, retries and resubmit in the CLI: `submit --array/--max-retries/--retry-on`
(the options `jobvisor.cli.jobs` adds to its submit through `add_submit_options`) and the
`resubmit` command."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from jobvisor.cli.client import add_client_arguments, client_from_args
from jobvisor.cli.errors import CliError
from jobvisor.cli.keyvalues import parse_key_values
from jobvisor.cli.resolve import resolve_job
from jobvisor.env_names import ARRAY_INDEX
from jobvisor.states import RETRY_ON_STATES

RETRY_ON_CHOICES = sorted(s.value for s in RETRY_ON_STATES)


def add_submit_options(p: argparse.ArgumentParser) -> None:
    """submit's options about arrays and retries."""
    p.add_argument(
        "--array", metavar="SPEC",
        help=f"a job array: one job per index, as sbatch --array: 1-100, 1,3,5-9 or 0-99:2; "
             f"end with %%N to run at most N at once (1-100%%10). Each job sees its index as ${ARRAY_INDEX}; "
             "prints the array id (the id of its first job)",
    )
    p.add_argument(
        "--max-retries", type=int, dest="max_retries", metavar="N",
        help="start up to N new attempts of the job after one that ended lost (its agent died or "
             "vanished), and after failed or timed_out as --retry-on allows. Each waits a backoff first "
             "(1 s, doubled each time: [supervisor] retry_backoff). Default 0: no retry",
    )
    p.add_argument(
        "--retry-on", dest="retry_on", metavar="STATES",
        help="comma-separated end states, besides lost, that count for --max-retries: "
             "failed (the command exited non-zero or could not start), timed_out (it ran past --walltime). "
             "lost is always retried",
    )


def submit_fields(args: argparse.Namespace) -> dict[str, Any]:
    """The job object's fields of those options (none given: none)."""
    fields: dict[str, Any] = {}
    if getattr(args, "max_retries", None) is not None:
        fields["max_retries"] = args.max_retries
    if getattr(args, "retry_on", None):
        states = [s.strip() for s in args.retry_on.split(",") if s.strip()]
        unknown = [s for s in states if s not in RETRY_ON_CHOICES]
        if unknown:
            raise CliError(f"--retry-on: {unknown[0]!r} is not one of {', '.join(RETRY_ON_CHOICES)}", status=2)
        fields["retry_on"] = states
    if getattr(args, "array", None):
        fields["array"] = args.array
    return fields


def print_submitted(reply: Any) -> None:
    """A submit's answer: the job id, or for an array its id on stdout and a summary on stderr."""
    if isinstance(reply, dict) and "array_id" in reply:
        print(reply["array_id"])
        cap = f", at most {reply['cap']} at once" if reply.get("cap") else ""
        print(f"array {reply['array_id']}: {reply['count']} jobs ({reply['array']}){cap}", file=sys.stderr)
        return
    print(reply["id"])


def parse_param_overrides(items: list[str]) -> dict[str, Any]:
    """`--param k=v` (repeatable) -> {k: v}; v is read as JSON when it is JSON (3, true,
    [1,2], "x"), else kept as a string."""
    return parse_key_values(items, "--param", "KEY may be dotted: args.size=10")


def cmd_resubmit(args: argparse.Namespace) -> int:
    overrides = parse_param_overrides(args.param or [])
    client = client_from_args(args)
    job = client.call("POST", f"/jobs/{resolve_job(client, args.id)}/resubmit", body={"params": overrides})
    print(job["id"])
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "resubmit", help="submit a new job like an old one; prints its id",
        description="A new job from an old job's code, params, resources, driver, retries and name. "
                    "--param changes one key of its params (dotted for nested keys: --param args.size=10; "
                    "a value is read as JSON if it is JSON, else as a string). The new job gets the old one's "
                    "input files: its --input files, kept [supervisor] keep_inputs_days (default 7) after "
                    "it ended, and a workflow job's files from the jobs it depended on. An array element is "
                    "resubmitted as one job. The new job is yours (an admin may resubmit anyone's).",
    )
    p.add_argument("id", metavar="JOB", help="the job to resubmit: its id, a unique id prefix or a unique name")
    p.add_argument("--param", action="append", metavar="KEY=VALUE", help="override one param (repeatable)")
    add_client_arguments(p)
    p.set_defaults(func=cmd_resubmit)
