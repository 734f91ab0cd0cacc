"""Admin commands that work on the state dir directly: `user add`, `token create|revoke`,
and `config show`. They run while `jobvisor up` serves (the user store is SQLite in WAL mode).

`user add` and `token create` print the new token alone on the last line of stdout, so
scripts can take it with `tail -n 1`. Every one of them takes `--config FILE` as `up` does, so
they find the state dir (and database) of an `up` started with the same file.
"""

from __future__ import annotations

import argparse
import json

from jobvisor.cli.config_args import add_config_argument, config_from_args
from jobvisor.config import Config, describe


def _store(config: Config):  # noqa: ANN202 - imported late: only these commands need it
    from api_gateway.auth_store import AuthStore

    return AuthStore.for_config(config)


async def cmd_user_add(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    async with _store(config) as store:
        await store.add_user(args.name, is_admin=args.admin)
        issued = await store.create_token(args.name, label="user add")
    role = "admin" if args.admin else "user"
    print(f"added {role} {args.name}; token {issued.id} (shown once):")
    print(issued.token)
    return 0


async def cmd_token_create(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    expires_in = None if args.expires_days is None else args.expires_days * 86400.0
    async with _store(config) as store:
        issued = await store.create_token(args.name, expires_in=expires_in, label=args.label or "")
    until = f", expires {issued.expires_at.isoformat()}" if issued.expires_at else ""
    print(f"token {issued.id} for {issued.user}{until} (shown once):")
    print(issued.token)
    return 0


async def cmd_token_revoke(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    async with _store(config) as store:
        token_id = await store.revoke_token(args.token)
    print(f"revoked {token_id} (the gateway stops accepting it within {config.gateway.token_cache_seconds:g} s)")
    return 0


async def cmd_token_list(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    async with _store(config) as store:
        rows = await store.list_tokens(args.user)
    for row in rows:
        status = "revoked" if row.revoked_at else "active"
        expires = row.expires_at.isoformat() if row.expires_at else "never"
        print(f"{row.id}  {row.user}  {status}  expires {expires}  {row.label}")
    return 0


def cmd_config_show(args: argparse.Namespace) -> int:
    print(json.dumps(describe(config_from_args(args)), indent=2))
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    common = argparse.ArgumentParser(add_help=False)  # where the state dir is
    common.add_argument("--state-dir", dest="state_dir", metavar="DIR",
                        help="state dir (default: [server] state_dir of the config, else the per-user data dir)")
    add_config_argument(common, "it gives the state dir and database, as for `jobvisor up`; --state-dir wins over it")

    user = subparsers.add_parser("user", help="manage users (writes the state dir directly)")
    user_sub = user.add_subparsers(dest="user_command", metavar="ACTION", required=True)
    p = user_sub.add_parser("add", parents=[common], help="add a user; prints a new token on the last line")
    p.add_argument("name")
    p.add_argument("--admin", action="store_true", help="the user sees and manages every job")
    p.set_defaults(func=cmd_user_add)

    token = subparsers.add_parser("token", help="manage API tokens (writes the state dir directly)")
    token_sub = token.add_subparsers(dest="token_command", metavar="ACTION", required=True)
    p = token_sub.add_parser("create", parents=[common], help="new token for a user; printed on the last line")
    p.add_argument("name", help="user name")
    p.add_argument("--expires-days", type=float, dest="expires_days", help="valid for this many days (default: no expiry)")
    p.add_argument("--label", help="a note to recognise the token by")
    p.set_defaults(func=cmd_token_create)
    p = token_sub.add_parser("revoke", parents=[common], help="revoke a token by id (tok_...) or by value")
    p.add_argument("token", metavar="TOKEN_ID|TOKEN")
    p.set_defaults(func=cmd_token_revoke)
    p = token_sub.add_parser("list", parents=[common], help="list tokens (ids, never values)")
    p.add_argument("--user")
    p.set_defaults(func=cmd_token_list)

    config = subparsers.add_parser("config", help="configuration")
    config_sub = config.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    p = config_sub.add_parser("show", help="the effective configuration as JSON, secrets masked")
    add_config_argument(p)
    p.set_defaults(func=cmd_config_show)
