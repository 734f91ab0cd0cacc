"""Admins' routes: users and API tokens (`/users`, `/tokens`) and the running server's
configuration (`/config`). Every one is refused with 403 to anyone but an admin.

Users and tokens live in the gateway's own store (`api_gateway.auth_store`), so these routes
make no op to the supervisor. A token's value is shown once, in the answer that made it;
a list shows its id and a masked prefix (`jv_AbCd…`).
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any

from aiohttp import web

from jobvisor.config import describe
from jobvisor.errors import Forbidden, InvalidRequest, NotFound

from api_gateway.auth_store import IssuedToken, TokenRow, UserRow
from api_gateway.context import CONFIG, STORE, caller_of
from api_gateway.routes_jobs import PREFIX, json_response
from api_gateway.validation import read_json

_NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
MAX_EXPIRES_DAYS = 36_500.0


def _admin(request: web.Request, what: str) -> None:
    if not caller_of(request).is_admin:
        raise Forbidden(f"{what} is for admins only")


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:  # SQLite hands datetimes back naive; they were stored as UTC
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _object(body: Any, fields: set[str]) -> dict:
    if not isinstance(body, dict):
        raise InvalidRequest("the body must be a JSON object", field="body")
    unknown = sorted(set(body) - fields)
    if unknown:
        raise InvalidRequest(f"unknown field {unknown[0]!r}; this takes {', '.join(sorted(fields))}", field=unknown[0])
    return body


def _text(body: dict, key: str, *, required: bool = False, limit: int = 200) -> str:
    value = body.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value) or len(value) > limit or "\0" in value:
        raise InvalidRequest(f"{key} must be a string of at most {limit} characters" + (" (required)" if required else ""),
                             field=key)
    return value


def user_view(row: UserRow, active_tokens: int) -> dict:
    return {"name": row.name, "admin": bool(row.is_admin), "created_at": _iso(row.created_at), "active_tokens": active_tokens}


def token_view(row: TokenRow, now: datetime) -> dict:
    return {
        "id": row.id, "user": row.user, "prefix": row.masked, "label": row.label or "", "state": row.state(now),
        "created_at": _iso(row.created_at), "expires_at": _iso(row.expires_at), "revoked_at": _iso(row.revoked_at),
        "last_used_at": _iso(row.last_used_at),
    }


def issued_view(issued: IssuedToken) -> dict:
    return {"id": issued.id, "user": issued.user, "token": issued.token, "prefix": issued.token[:7] + "…",
            "expires_at": _iso(issued.expires_at)}


# --------------------------------------------------------------------------- users


async def add_user(request: web.Request) -> web.Response:
    """A new user and its first token (shown once)."""
    _admin(request, "adding users")
    body = _object(await read_json(request), {"name", "admin"})
    name = _text(body, "name", required=True, limit=64)
    admin = body.get("admin", False)
    if not isinstance(admin, bool):
        raise InvalidRequest("admin must be true or false", field="admin")
    store = request.app[STORE]
    await store.add_user(name, is_admin=admin)
    issued = await store.create_token(name, label=f"user add by {caller_of(request).user}")
    row = await store.get_user(name)
    assert row is not None
    return json_response({**user_view(row, 1), "token": issued_view(issued)}, status=201,
                         headers={"Location": f"{PREFIX}/users/{name}"})


async def list_users(request: web.Request) -> web.Response:
    _admin(request, "listing users")
    rows = await request.app[STORE].list_users()
    return json_response({"users": [user_view(row, active) for row, active in rows]})


async def remove_user(request: web.Request) -> web.Response:
    """The user and its tokens are removed; its jobs stay."""
    _admin(request, "removing users")
    name = request.match_info["name"]
    if not _NAME.match(name):
        raise NotFound(f"no user {name!r}", field="name")
    revoked = await request.app[STORE].remove_user(name)
    return json_response({"name": name, "removed": True, "tokens_removed": revoked})


# --------------------------------------------------------------------------- tokens


async def create_token(request: web.Request) -> web.Response:
    _admin(request, "making tokens")
    body = _object(await read_json(request), {"user", "expires_days", "label"})
    user = _text(body, "user", required=True, limit=64)
    label = _text(body, "label")
    days = body.get("expires_days")
    if days is not None and (isinstance(days, bool) or not isinstance(days, (int, float)) or not 0 < days <= MAX_EXPIRES_DAYS):
        raise InvalidRequest(f"expires_days must be a number of days above 0, at most {MAX_EXPIRES_DAYS:g}", field="expires_days")
    issued = await request.app[STORE].create_token(user, expires_in=None if days is None else days * 86400.0, label=label)
    return json_response(issued_view(issued), status=201)


async def list_tokens(request: web.Request) -> web.Response:
    _admin(request, "listing tokens")
    user = request.query.get("user") or None
    rows = await request.app[STORE].list_tokens(user)
    now = datetime.now(timezone.utc)
    return json_response({"tokens": [token_view(row, now) for row in rows]})


async def revoke_token(request: web.Request) -> web.Response:
    _admin(request, "revoking tokens")
    token_id = request.match_info["id"]
    if not token_id.startswith("tok_") or not _NAME.match(token_id):
        raise NotFound(f"no token {token_id!r}", field="id")
    revoked = await request.app[STORE].revoke_token(token_id)
    return json_response({"id": revoked, "revoked": True})


# --------------------------------------------------------------------------- configuration


async def get_config(request: web.Request) -> web.Response:
    """The configuration this server runs with (`up` shares it between its gateway and its
    supervisor), secrets masked."""
    _admin(request, "the server's configuration")
    return json_response(describe(request.app[CONFIG]))


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_post(PREFIX + "/users", add_user)
    r.add_get(PREFIX + "/users", list_users, allow_head=False)
    r.add_delete(PREFIX + "/users/{name}", remove_user)
    r.add_post(PREFIX + "/tokens", create_token)
    r.add_get(PREFIX + "/tokens", list_tokens, allow_head=False)
    r.add_delete(PREFIX + "/tokens/{id}", revoke_token)
    r.add_get(PREFIX + "/config", get_config, allow_head=False)
