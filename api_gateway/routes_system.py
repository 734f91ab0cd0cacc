"""Routes about the system: queue, agents, status, the OpenAPI document, the GUI."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from jobvisor import __version__
from jobvisor.protocol.common import PROTOCOL_VERSION
from jobvisor.protocol.system_requests import GetAgents, GetQueue, GetStatus

from api_gateway.context import HUB, SUPERVISOR, caller_of, op, public
from api_gateway.openapi import build_openapi
from api_gateway.routes_jobs import PREFIX, json_response

STATIC = Path(__file__).parent / "static"


async def get_queue(request: web.Request) -> web.Response:
    caller = caller_of(request)
    reply = await op(request, GetQueue(caller=caller))
    jobs = reply.get("jobs", [])
    if not caller.is_admin:
        jobs = [job for job in jobs if job.get("owner") == caller.user]
    return json_response({"drivers": reply.get("drivers", {}), "jobs": jobs})


async def get_agents(request: web.Request) -> web.Response:
    caller = caller_of(request)
    reply = await op(request, GetAgents(caller=caller))
    agents = reply.get("agents", [])
    if not caller.is_admin:
        agents = [agent for agent in agents if agent.get("user") == caller.user]
    return json_response({"agents": agents})


async def get_whoami(request: web.Request) -> web.Response:
    """Answered by the gateway alone: the token says it (the CLI's list shows owners to admins)."""
    caller = caller_of(request)
    return json_response({"user": caller.user, "admin": caller.is_admin})


@public
async def get_status(request: web.Request) -> web.Response:
    data = await op(request, GetStatus())
    supervisor = request.app[SUPERVISOR]
    data = dict(data)
    data["gateway"] = {
        "version": __version__,
        "protocol_version": PROTOCOL_VERSION,
        "events_connected": supervisor.events_connected.is_set(),
        "event_subscribers": request.app[HUB].subscriber_count,
    }
    return json_response(data)


@public
async def get_openapi(request: web.Request) -> web.Response:
    return json_response(build_openapi())


@public
async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get(PREFIX + "/queue", get_queue, allow_head=False)
    r.add_get(PREFIX + "/agents", get_agents, allow_head=False)
    r.add_get(PREFIX + "/status", get_status, allow_head=False)
    r.add_get(PREFIX + "/whoami", get_whoami, allow_head=False)
    r.add_get(PREFIX + "/openapi.json", get_openapi, allow_head=False)
    r.add_get("/", index, allow_head=False)
