"""Routes of the orchestrator API that act on many jobs or on the server: the queue's clear,
an agent's cancel and shutdown, the admins' cancel-all and shutdown, and timers.

The admin-only routes are refused here (403) before any op; the supervisor checks again.
"""

from __future__ import annotations

import re

from aiohttp import web

from jobvisor.errors import Forbidden, InvalidRequest, NotFound
from jobvisor.ids import AgentId
from jobvisor.protocol.system_requests import CancelAgentJobs, CancelAll, ClearQueue, ShutdownAgent, ShutdownServer
from jobvisor.protocol.workflow_requests import CreateTimer, DeleteTimer, ListTimers

from api_gateway.context import caller_of, op
from api_gateway.routes_jobs import PREFIX, json_response
from api_gateway.validation import read_json

_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def _path_id(request: web.Request, what: str) -> str:
    """The `{id}` of the path; a malformed one cannot name anything: 404 like an unknown one."""
    value = request.match_info["id"]
    if not _ID.match(value):
        raise NotFound(f"no {what} {value!r}")
    return value


def _admin(request: web.Request, what: str) -> None:
    if not caller_of(request).is_admin:
        raise Forbidden(f"{what} is for admins only")


# --------------------------------------------------------------------------- queue and agents


async def clear_queue(request: web.Request) -> web.Response:
    """The caller's queued and waiting jobs canceled; admins: everyone's, or `?user=`'s."""
    caller = caller_of(request)
    user = request.query.get("user", "")
    if "user" in request.query and not user:
        raise InvalidRequest("user must name a user", field="user")
    if user and user != caller.user:
        _admin(request, "clearing another user's queue")
    return json_response(await op(request, ClearQueue(caller=caller, user=user)))


async def cancel_agent(request: web.Request) -> web.Response:
    agent_id = AgentId(_path_id(request, "agent"))
    return json_response(await op(request, CancelAgentJobs(caller=caller_of(request), agent_id=agent_id)))


async def shutdown_agent(request: web.Request) -> web.Response:
    agent_id = AgentId(_path_id(request, "agent"))
    return json_response(await op(request, ShutdownAgent(caller=caller_of(request), agent_id=agent_id)))


# --------------------------------------------------------------------------- admin


async def cancel_all(request: web.Request) -> web.Response:
    _admin(request, "cancel_all")
    return json_response(await op(request, CancelAll(caller=caller_of(request))))


async def shutdown(request: web.Request) -> web.Response:
    """Answered first; `jobvisor up` then stops as on SIGTERM."""
    _admin(request, "shutdown")
    return json_response(await op(request, ShutdownServer(caller=caller_of(request))), status=202)


# --------------------------------------------------------------------------- timers

TIMER_FIELDS = ("workflow_id", "at", "every", "cron")


def parse_timer(data: object) -> dict[str, str]:
    """The body of POST /timers: `workflow_id` and exactly one of `at`, `every`, `cron`
    (their values are checked by the supervisor, which knows the workflow)."""
    if not isinstance(data, dict):
        raise InvalidRequest("a timer is a JSON object", field="body")
    for key in data:
        if key not in TIMER_FIELDS:
            raise InvalidRequest(f"unknown field {key!r}; a timer has {', '.join(TIMER_FIELDS)}", field=str(key)[:64])
    workflow_id = data.get("workflow_id")
    if not isinstance(workflow_id, str) or not workflow_id:
        raise InvalidRequest("workflow_id is required: the id of the workflow to execute", field="workflow_id")
    out = {"workflow_id": workflow_id}
    given = [key for key in ("at", "every", "cron") if data.get(key) not in (None, "")]
    if len(given) != 1:
        raise InvalidRequest("give exactly one of at, every and cron", field=given[1] if len(given) > 1 else "at")
    key = given[0]
    value = data[key]
    if key == "every" and isinstance(value, (int, float)) and not isinstance(value, bool):
        value = repr(value)
    if not isinstance(value, str):
        raise InvalidRequest(f"{key} must be a string" + (" or a number of seconds" if key == "every" else ""), field=key)
    out[key] = value
    return out


async def create_timer(request: web.Request) -> web.Response:
    fields = parse_timer(await read_json(request))
    timer = await op(request, CreateTimer(caller=caller_of(request), **fields))
    return json_response(timer, status=201, headers={"Location": f"{PREFIX}/timers/{timer['id']}"})


async def list_timers(request: web.Request) -> web.Response:
    return json_response(await op(request, ListTimers(caller=caller_of(request))))


async def delete_timer(request: web.Request) -> web.Response:
    timer_id = _path_id(request, "timer")
    return json_response(await op(request, DeleteTimer(caller=caller_of(request), timer_id=timer_id)))


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_post(PREFIX + "/queue/clear", clear_queue)
    r.add_post(PREFIX + "/agents/{id}/cancel", cancel_agent)
    r.add_post(PREFIX + "/agents/{id}/shutdown", shutdown_agent)
    r.add_post(PREFIX + "/admin/cancel_all", cancel_all)
    r.add_post(PREFIX + "/admin/shutdown", shutdown)
    r.add_post(PREFIX + "/timers", create_timer)
    r.add_get(PREFIX + "/timers", list_timers, allow_head=False)
    r.add_delete(PREFIX + "/timers/{id}", delete_timer)
