"""`jobvisor clusters`, `jobvisor login CLUSTER`, `jobvisor logout CLUSTER`: the Slurm clusters
of the sbatch driver and the user's login to each.

The password (and one-time code) is read from the terminal without echo, or from stdin with
`--password-stdin`; it goes to the gateway in one request and is never written anywhere.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys

from jobvisor.cli.client import add_client_arguments, client_from_args
from jobvisor.cli.errors import CliError
from jobvisor.cli.fmt import table as format_table


def _read_secret(prompt: str, from_stdin: bool) -> str:
    if from_stdin:
        line = sys.stdin.readline()
        if not line:
            raise CliError(f"{prompt.rstrip(': ')}: nothing on stdin")
        return line.rstrip("\n")
    if not sys.stdin.isatty():
        raise CliError("no terminal to ask for the password: use --password-stdin (or --key)")
    return getpass.getpass(prompt)


def cmd_login(args: argparse.Namespace) -> int:
    body: dict = {"method": "key" if args.key else "password"}
    username = args.user or ("" if args.key else os.environ.get("USER", ""))
    if username:
        body["username"] = username
    if not args.key:
        body["password"] = _read_secret(f"password for {username or 'you'} on {args.cluster}: ", args.password_stdin)
        if args.otp:
            body["otp"] = _read_secret("one-time code: ", args.password_stdin)
    client = client_from_args(args)
    reply = client.call("POST", f"/clusters/{args.cluster}/login", body=body)
    print(f"logged in to {reply.get('cluster', args.cluster)} as {reply.get('username') or username} "
          f"({reply.get('method') or body['method']}); work dir {reply.get('work_dir') or '-'}")
    return 0


def cmd_logout(args: argparse.Namespace) -> int:
    reply = client_from_args(args).call("DELETE", f"/clusters/{args.cluster}/login")
    still = f" (still: {reply['method']} as {reply['username']})" if reply.get("logged_in") else ""
    print(f"logged out of {args.cluster}{still}")
    return 0


def cmd_clusters(args: argparse.Namespace) -> int:
    clusters = client_from_args(args).call("GET", "/clusters")
    if args.json:
        print(json.dumps(clusters, indent=2))
        return 0
    if not clusters:
        print("no Slurm clusters are configured on this server")
        return 0
    rows = [
        [c["name"] + (" *" if c.get("default") else ""), f"{c['login_host']}:{c['login_port']}",
         c.get("partition") or "-", c.get("account") or "-",
         f"{c['username']} ({c['method']})" if c.get("logged_in") else "no"]
        for c in clusters
    ]
    print(format_table(rows, ["CLUSTER", "LOGIN NODE", "PARTITION", "ACCOUNT", "LOGGED IN"]))
    print("* where sbatch jobs that name no --cluster go")
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("clusters", help="list the Slurm clusters (sbatch driver) and your logins",
                              description="The Slurm clusters of the sbatch driver and whether you are logged in.")
    p.add_argument("--json", action="store_true", help="print the server's JSON")
    add_client_arguments(p)
    p.set_defaults(func=cmd_clusters)

    p = subparsers.add_parser("logout", help="log out of a Slurm cluster (sbatch driver)",
                              description="Close your SSH connection to a cluster; new agents there need a new login.")
    p.add_argument("cluster", help="the cluster's name (see `jobvisor clusters`)")
    add_client_arguments(p)
    p.set_defaults(func=cmd_logout)

    p = subparsers.add_parser("login", help="log in to a Slurm cluster (sbatch driver)",
                              description="Log in to a Slurm cluster's login node; sbatch jobs wait for it.")
    p.add_argument("cluster", help="the cluster's name (see `jobvisor clusters`)")
    p.add_argument("--user", help="cluster username (default: $USER; with --key: the operator's default)")
    p.add_argument("--key", action="store_true", help="log in with the key the operator configured")
    p.add_argument("--otp", action="store_true", help="the site asks for a one-time code as well")
    p.add_argument("--password-stdin", action="store_true", dest="password_stdin",
                   help="read the password (then the one-time code) from stdin, one per line")
    add_client_arguments(p)
    p.set_defaults(func=cmd_login)
