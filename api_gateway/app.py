"""The gateway application: `make_app(config)` for any aiohttp runner, `start_gateway` to serve
it inside an already running asyncio loop (`jobvisor up` runs it beside the supervisor).

    handle = await start_gateway(config)              # host/port default to [server]
    token = await bootstrap_admin(handle.store)      # first start only; print it once
    ...
    await handle.close()
"""

from __future__ import annotations

import asyncio
import logging
import socket
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from jobvisor.config import Config
from jobvisor.errors import AuthError
from jobvisor.link import LocalLink
from jobvisor.protocol.common import Caller

from api_gateway import (
    routes_clusters, routes_events, routes_jobs, routes_orchestrator, routes_system, routes_users, routes_workflows,
)
from api_gateway.auth_store import AuthStore, bootstrap_admin
from api_gateway.context import CALLER, CONFIG, HUB, STORE, STREAMS, SUPERVISOR
from api_gateway.events import EventHub
from api_gateway.problems import error_middleware, unauthorized
from api_gateway.query_params import query_middleware
from api_gateway.supervisor_client import SupervisorClient

__all__ = ["make_app", "start_gateway", "bootstrap_admin", "GatewayHandle"]

log = logging.getLogger(__name__)

_EVENTS_TASK = web.AppKey("events_task", asyncio.Task)
_OWNS_STORE = web.AppKey("owns_store", bool)
_MISSING_TOKEN = (
    "missing bearer token: send 'Authorization: Bearer <token>'. "
    "An admin makes one with `jobvisor token create <user>`."
)


def _bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        return None
    if request.method == "GET":  # EventSource cannot set headers
        return request.query.get("access_token") or None
    return None


@web.middleware
async def auth_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    route = request.match_info.route
    if getattr(route.handler, "public", False) or route.resource is None:
        return await handler(request)  # public route, or 404/405 of an unknown route
    token = _bearer(request)
    if token is None:
        return unauthorized(_MISSING_TOKEN)
    try:
        principal = await request.app[STORE].authenticate(token)
    except AuthError as exc:
        return unauthorized(str(exc))
    request[CALLER] = Caller(user=principal.user, is_admin=principal.is_admin)
    return await handler(request)


def make_app(
    config: Config, *, store: AuthStore | None = None, secret: str | None = None, link: LocalLink | None = None
) -> web.Application:
    """The gateway app. Without `store`, it opens (and later closes) `<state_dir>/gateway.sqlite`.
    `secret` defaults to the internal secret file of the state dir."""
    app = web.Application(
        middlewares=[error_middleware, auth_middleware, query_middleware],
        client_max_size=config.gateway.max_body_bytes,
    )
    app[CONFIG] = config
    app[HUB] = EventHub()
    app[STREAMS] = set()
    app[SUPERVISOR] = SupervisorClient(config, secret=secret, link=link)
    app[_OWNS_STORE] = store is None
    app[STORE] = store if store is not None else AuthStore.for_config(config)
    routes_jobs.add_routes(app)
    routes_system.add_routes(app)
    routes_events.add_routes(app)
    routes_clusters.add_routes(app)
    routes_workflows.add_routes(app)
    routes_orchestrator.add_routes(app)
    routes_users.add_routes(app)
    app.on_startup.append(_on_startup)
    app.on_shutdown.append(_on_shutdown)
    app.on_cleanup.append(_on_cleanup)
    return app


async def _on_startup(app: web.Application) -> None:
    if app[_OWNS_STORE]:
        await app[STORE].open()
    client = app[SUPERVISOR]
    await client.start()
    app[_EVENTS_TASK] = asyncio.create_task(client.run_events(app[HUB].publish, on_linked=app[HUB].resume_all), name="gateway-events")
    log.info("gateway ready; supervisor at %s", client.url)


async def _on_shutdown(app: web.Application) -> None:
    app[HUB].close()
    for task in list(app[STREAMS]):
        task.cancel()


async def _on_cleanup(app: web.Application) -> None:
    task = app.get(_EVENTS_TASK)
    if task is not None:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    await app[SUPERVISOR].close()
    if app[_OWNS_STORE]:
        await app[STORE].close()


@dataclass
class GatewayHandle:
    """A gateway serving in the current loop."""

    url: str
    app: web.Application
    runner: web.AppRunner

    @property
    def store(self) -> AuthStore:
        return self.app[STORE]

    async def close(self) -> None:
        await self.runner.cleanup()


async def start_gateway(
    config: Config, host: str | None = None, port: int | None = None, *, secret: str | None = None,
    link: LocalLink | None = None, sock: socket.socket | None = None,
) -> GatewayHandle:
    """Serve the gateway on host:port (default: [server] host and port; port 0: a free one),
    or on `sock`, bound already (`jobvisor up` binds it before its supervisor starts).
    With `link`, it talks to a supervisor in this process (see jobvisor.link)."""
    host = config.server.host if host is None else host
    port = config.server.port if port is None else port
    app = make_app(config, secret=secret, link=link)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=5.0)
    await runner.setup()
    site = web.SockSite(runner, sock) if sock is not None else web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError:
        await runner.cleanup()
        raise
    sockets = runner.addresses
    bound_port = sockets[0][1] if sockets else port
    url_host = f"[{host}]" if ":" in host else host
    url = f"http://{url_host}:{bound_port}"
    log.info("gateway listening on %s", url)
    return GatewayHandle(url=url, app=app, runner=runner)
