"""Routes about Slurm clusters (the sbatch driver): list them, log in to and out of one.

The body's password and one-time code go to the supervisor in one op and nowhere else: this
module never logs a body, and the supervisor keeps them only for the SSH connect.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from jobvisor.errors import InvalidRequest
from jobvisor.protocol.system_requests import ClusterLogin, ClusterLogout, ListClusters
from jobvisor.wire_values import check_wire_value

from api_gateway.context import caller_of, op
from api_gateway.routes_jobs import PREFIX, json_response
from api_gateway.validation import read_json

LOGIN_FIELDS = frozenset({"username", "password", "otp", "method"})
MAX_FIELD = 4096


def parse_login(data: Any) -> dict:
    if not isinstance(data, dict):
        raise InvalidRequest("the login must be a JSON object", field="body")
    unknown = sorted(set(data) - LOGIN_FIELDS)
    if unknown:
        raise InvalidRequest(f"unknown field {unknown[0]!r}; a login has {', '.join(sorted(LOGIN_FIELDS))}", field=unknown[0])
    out = {}
    for name in ("username", "password", "otp"):
        value = data.get(name, "")
        if not isinstance(value, str) or len(value) > MAX_FIELD or "\x00" in value:
            raise InvalidRequest(f"{name} must be a string", field=name)
        check_wire_value(value, name)
        out[name] = value
    method = data.get("method", "password")
    if method not in ("password", "key"):
        raise InvalidRequest("method must be 'password' or 'key'", field="method")
    if method == "password" and not out["password"]:
        raise InvalidRequest("a password is required (or method 'key' for the operator's key)", field="password")
    out["use_key"] = method == "key"
    return out


async def post_login(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    fields = parse_login(await read_json(request))
    reply = await op(request, ClusterLogin(
        caller=caller_of(request), cluster=name, username=fields["username"], password=fields["password"],
        otp=fields["otp"], use_key=fields["use_key"],
    ))
    return json_response(reply)


async def delete_login(request: web.Request) -> web.Response:
    return json_response(await op(request, ClusterLogout(caller=caller_of(request), cluster=request.match_info["name"])))


async def get_clusters(request: web.Request) -> web.Response:
    return json_response(await op(request, ListClusters(caller=caller_of(request))))


def add_routes(app: web.Application) -> None:
    app.router.add_get(PREFIX + "/clusters", get_clusters, allow_head=False)
    app.router.add_post(PREFIX + "/clusters/{name}/login", post_login)
    app.router.add_delete(PREFIX + "/clusters/{name}/login", delete_login)
