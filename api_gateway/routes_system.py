"""Routes about the system: queue, agents, live events, status, the OpenAPI document, the GUI."""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiohttp import web

from jobvisor import __version__
from jobvisor.protocol import PROTOCOL_VERSION, GetAgents, GetQueue, GetStatus

from api_gateway import sse
from api_gateway.context import HUB, STREAMS, SUPERVISOR, caller_of, op, public
from api_gateway.events import event_json
from api_gateway.openapi import build_openapi
from api_gateway.routes_jobs import PREFIX, json_response

STATIC = Path(__file__).parent / "static"
EVENT_BATCH = 500  # most events written in one chunk when a burst is queued
# After a chunk of at least BURST_EVENTS (a burst, not one job's few transitions), the next
# chunk waits BURST_PAUSE seconds to gather more: every write costs a send and a wake-up of
# the client, so a burst goes out in a few large writes. A lone event is never delayed.
BURST_EVENTS = 16
BURST_PAUSE = 0.005


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


async def get_events(request: web.Request) -> web.StreamResponse:
    """SSE of the caller's job transitions (all jobs' for admins); `?job=ID` for one job."""
    caller = caller_of(request)
    job_id = request.query.get("job") or None
    hub = request.app[HUB]
    streams = request.app[STREAMS]
    task = asyncio.current_task()
    streams.add(task)
    # subscribe before the headers go out: a client that saw the 200 misses no event
    sub = hub.subscribe(caller.user, caller.is_admin, job_id)
    resp: web.StreamResponse | None = None
    try:
        resp = await sse.open_stream(request)
        await resp.write(b"retry: 2000\n: subscribed\n\n")
        while True:
            try:
                event = await sub.next(sse.HEARTBEAT_SECONDS)
            except asyncio.TimeoutError:
                await sse.heartbeat(resp)
                continue
            if event is None:
                if sub.overflowed:
                    await sse.send(resp, "overflow", {"detail": "events came faster than this client read them; re-read job states"})
                break
            chunk = [sse.format_event("job", event_json(event))]
            while len(chunk) < EVENT_BATCH and not sub.queue.empty():
                more = sub.queue.get_nowait()
                if more is None:
                    sub.end()  # leave the end mark for the next turn
                    break
                chunk.append(sse.format_event("job", event_json(more)))
            await resp.write(b"".join(chunk))
            if len(chunk) >= BURST_EVENTS:
                await asyncio.sleep(BURST_PAUSE)
        await resp.write_eof()
    except (ConnectionResetError, asyncio.CancelledError):
        if resp is None:
            raise
    finally:
        hub.unsubscribe(sub)
        streams.discard(task)
    return resp


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
    r.add_get(PREFIX + "/events", get_events, allow_head=False)
    r.add_get(PREFIX + "/status", get_status, allow_head=False)
    r.add_get(PREFIX + "/openapi.json", get_openapi, allow_head=False)
    r.add_get("/", index, allow_head=False)
