"""Admin commands: `user add|list|remove`, `token create|list|revoke`, `config show [--server]`.

They use the API when they can: with a gateway URL (`--url`, `$JOBVISOR_URL`) and an admin's
token (`--token`, `$JOBVISOR_TOKEN`), and no `--state-dir`. Otherwise they write the state dir
directly, to bootstrap (the first admin, before or beside `up`). Then they print the state dir
they used, on stderr, and they use the one of the `up` that serves this machine's gateway URL
(`jobvisor.cli.running`) unless one is given (`--state-dir`, `[server] state_dir`), so a token
is not written where the running server does not look by mistake: a given state dir that
differs from the running server's is written only if it has users already (a second jobvisor's,
said so on stderr); a new one is refused with the way out.

`user add` and `token create` print the new token alone on the last line of stdout, so
scripts can take it with `tail -n 1`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from typing import Any, AsyncIterator

from jobvisor.cli import fmt
from jobvisor.cli.client import ApiClient, add_client_arguments, client_from_args
from jobvisor.cli.config_args import add_config_argument, config_from_args
from jobvisor.cli.errors import CliError
from jobvisor.cli.running import running_at
from jobvisor.config import Config, describe

EXIT_USAGE = 2


# --------------------------------------------------------------------------- where to write


def api_client(args: argparse.Namespace) -> ApiClient | None:
    """The API, when a URL and a token are given and no state dir is."""
    if getattr(args, "state_dir", None):
        return None
    url = args.url or os.environ.get("JOBVISOR_URL")
    token = args.token or os.environ.get("JOBVISOR_TOKEN")
    if not url or not token:
        return None
    return client_from_args(args)


def state_config(args: argparse.Namespace) -> Config:
    """The configuration whose state dir (or database) to write directly: the running
    server's when one serves this machine's gateway URL; an explicit state dir that differs
    from its is refused. The state dir is printed on stderr."""
    config = config_from_args(args)
    note = ""
    if not config.database_url.startswith("postgresql"):  # with PostgreSQL the users live in its database
        url = getattr(args, "url", None) or os.environ.get("JOBVISOR_URL") or config.gateway_url
        server = running_at(url)
        new = not (config.state_dir / "gateway.sqlite").exists()
        if server is not None and server.state_dir.resolve() != config.state_dir.resolve():
            if not (args.state_dir or config.server.state_dir):  # none was asked for: the server's
                config = config.replace("server", state_dir=str(server.state_dir))
                new, note = False, f" (that of the jobvisor running at {server.url})"
            elif new:
                raise CliError(
                    f"the jobvisor running at {server.url} (pid {server.pid}) uses the state dir {server.state_dir}, "
                    f"not {config.state_dir}, which has no users yet: a token written there would be refused by it. "
                    f"Give --state-dir {server.state_dir}, or use its API (JOBVISOR_URL and an admin's JOBVISOR_TOKEN)",
                    status=EXIT_USAGE,
                )
            else:
                note = f" (not that of the jobvisor running at {server.url}: {server.state_dir})"
        if new:
            note = " (new)"
    print(f"state dir: {config.state_dir}{note}", file=sys.stderr)
    return config


@asynccontextmanager
async def _store(config: Config) -> AsyncIterator[Any]:
    from api_gateway.auth_store import AuthStore  # imported late: only the direct mode needs it

    async with AuthStore.for_config(config) as store:
        yield store


def user_view(row: Any, active: int) -> dict:
    from api_gateway.routes_users import user_view as view  # the API's view of a row: the same output

    return view(row, active)


def token_view(row: Any, now: datetime) -> dict:
    from api_gateway.routes_users import token_view as view

    return view(row, now)


def _when(value: Any) -> str:
    """An ISO time (API) or a datetime (store) as local time, '-' for none."""
    if value is None or value == "":
        return "-"
    if isinstance(value, datetime):
        value = (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).isoformat()
    return fmt.short_time(value)


def _shown_once(what: str, token: str) -> int:
    """A new token, alone on the last line of stdout (scripts take it with `tail -n 1`)."""
    print(f"{what} (shown once):")
    print(token)
    return 0


# --------------------------------------------------------------------------- users


async def cmd_user_add(args: argparse.Namespace) -> int:
    role = "admin" if args.admin else "user"
    client = api_client(args)
    if client is not None:
        made = client.call("POST", "/users", body={"name": args.name, "admin": args.admin})
        token_id, token = made["token"]["id"], made["token"]["token"]
        where = f"at {client.base}"
    else:
        config = state_config(args)
        async with _store(config) as store:
            await store.add_user(args.name, is_admin=args.admin)
            issued = await store.create_token(args.name, label="user add")
        token_id, token = issued.id, issued.token
        where = f"in {config.state_dir}"
    return _shown_once(f"added {role} {args.name} {where}; token {token_id}", token)


async def cmd_user_list(args: argparse.Namespace) -> int:
    client = api_client(args)
    if client is not None:
        users = client.call("GET", "/users")["users"]
    else:
        async with _store(state_config(args)) as store:
            users = [user_view(row, n) for row, n in await store.list_users()]
    if args.json:
        print(json.dumps(users, indent=2, default=str))
        return 0
    rows = [[u["name"], "admin" if u["admin"] else "user", u["active_tokens"], _when(u["created_at"])] for u in users]
    print(fmt.table(rows, ["NAME", "ROLE", "TOKENS", "CREATED"]))
    return 0


async def cmd_user_remove(args: argparse.Namespace) -> int:
    client = api_client(args)
    if client is not None:
        removed = client.call("DELETE", f"/users/{args.name}")["tokens_removed"]
    else:
        async with _store(state_config(args)) as store:
            removed = await store.remove_user(args.name)
    print(f"removed user {args.name} and its {removed} token(s); its jobs stay")
    return 0


# --------------------------------------------------------------------------- tokens


async def cmd_token_create(args: argparse.Namespace) -> int:
    client = api_client(args)
    if client is not None:
        body: dict[str, Any] = {"user": args.name}
        if args.expires_days is not None:
            body["expires_days"] = args.expires_days
        if args.label:
            body["label"] = args.label
        made = client.call("POST", "/tokens", body=body)
        token_id, user, token, expires = made["id"], made["user"], made["token"], made["expires_at"]
    else:
        expires_in = None if args.expires_days is None else args.expires_days * 86400.0
        async with _store(state_config(args)) as store:
            issued = await store.create_token(args.name, expires_in=expires_in, label=args.label or "")
        token_id, user, token = issued.id, issued.user, issued.token
        expires = issued.expires_at.isoformat() if issued.expires_at else None
    until = f", expires {expires}" if expires else ""
    return _shown_once(f"token {token_id} for {user}{until}", token)


async def cmd_token_revoke(args: argparse.Namespace) -> int:
    client = api_client(args)
    if client is not None:
        if not args.token_ref.startswith("tok_"):
            raise CliError("over the API a token is revoked by its id (tok_...; `jobvisor token list` shows them)",
                           status=EXIT_USAGE)
        token_id = client.call("DELETE", f"/tokens/{args.token_ref}")["id"]
        cache = "[gateway] token_cache_seconds"
    else:
        config = state_config(args)
        async with _store(config) as store:
            token_id = await store.revoke_token(args.token_ref)
        cache = f"{config.gateway.token_cache_seconds:g} s"
    print(f"revoked {token_id} (the gateway stops accepting it within {cache})")
    return 0


async def cmd_token_list(args: argparse.Namespace) -> int:
    client = api_client(args)
    if client is not None:
        tokens = client.call("GET", "/tokens", query={"user": args.user})["tokens"]
    else:
        now = datetime.now(timezone.utc)
        async with _store(state_config(args)) as store:
            tokens = [token_view(row, now) for row in await store.list_tokens(args.user)]
    if args.json:
        print(json.dumps(tokens, indent=2))
        return 0
    rows = [[t["id"], t["user"], t["prefix"], t["state"], _when(t["created_at"]), _when(t["last_used_at"]),
             _when(t["expires_at"]) if t["expires_at"] else "never", t["label"]] for t in tokens]
    print(fmt.table(rows, ["ID", "USER", "TOKEN", "STATE", "CREATED", "LAST USED", "EXPIRES", "LABEL"]))
    return 0


# --------------------------------------------------------------------------- configuration


def cmd_config_show(args: argparse.Namespace) -> int:
    if args.server:
        data = client_from_args(args).call("GET", "/config")
    else:
        data = describe(config_from_args(args))
    print(json.dumps(data, indent=2))
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--state-dir", dest="state_dir", metavar="DIR",
                        help="write this state dir directly, not through the API (default: the running "
                             "server's, else [server] state_dir of the config, else the per-user data dir)")
    common.add_argument("--url", help="gateway URL (default: $JOBVISOR_URL, else [server] host and port of the config)")
    common.add_argument("--token", help="an admin's API token (default: $JOBVISOR_TOKEN); without one, the state dir "
                                        "is written directly")
    add_config_argument(common, "it gives the gateway URL, and the state dir and database written without a token, "
                                "as for `jobvisor up`; --state-dir wins over it")
    listing = argparse.ArgumentParser(add_help=False)
    listing.add_argument("--json", action="store_true", help="print JSON")
    how = ("Through the API with --url/$JOBVISOR_URL and an admin's --token/$JOBVISOR_TOKEN; otherwise (or with "
           "--state-dir) by writing the state dir directly, to bootstrap: the state dir of the `jobvisor up` "
           "serving this machine's gateway URL, printed on stderr.")

    user = subparsers.add_parser("user", help="manage users (admins)", description=how)
    user_sub = user.add_subparsers(dest="user_command", metavar="ACTION", required=True)
    p = user_sub.add_parser("add", parents=[common], help="add a user; prints its first token on the last line",
                            description=how)
    p.add_argument("name")
    p.add_argument("--admin", action="store_true", help="the user sees and manages every job and user")
    p.set_defaults(func=cmd_user_add)
    p = user_sub.add_parser("list", parents=[common, listing], help="list users", description=how)
    p.set_defaults(func=cmd_user_list)
    p = user_sub.add_parser("remove", parents=[common], help="remove a user and its tokens (its jobs stay)",
                            description=how)
    p.add_argument("name")
    p.set_defaults(func=cmd_user_remove)

    token = subparsers.add_parser("token", help="manage API tokens (admins)", description=how)
    token_sub = token.add_subparsers(dest="token_command", metavar="ACTION", required=True)
    p = token_sub.add_parser("create", parents=[common], help="new token for a user; printed on the last line",
                             description=how)
    p.add_argument("name", help="user name")
    p.add_argument("--expires-days", type=float, dest="expires_days", help="valid for this many days (default: no expiry)")
    p.add_argument("--label", help="a note to recognise the token by")
    p.set_defaults(func=cmd_token_create)
    p = token_sub.add_parser("revoke", parents=[common], help="revoke a token by id (tok_...), or by value with --state-dir",
                             description=how)
    p.add_argument("token_ref", metavar="TOKEN_ID|TOKEN")
    p.set_defaults(func=cmd_token_revoke)
    p = token_sub.add_parser("list", parents=[common, listing],
                             help="list tokens: id, user, masked prefix, state, creation, last use, expiry",
                             description=how)
    p.add_argument("--user", help="only this user's")
    p.set_defaults(func=cmd_token_list)

    config = subparsers.add_parser("config", help="configuration")
    config_sub = config.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    p = config_sub.add_parser("show", help="the effective configuration as JSON, secrets masked")
    p.add_argument("--server", action="store_true",
                   help="the running server's configuration, through the API (admins), instead of this machine's "
                        "file and environment")
    add_client_arguments(p)
    p.set_defaults(func=cmd_config_show)
