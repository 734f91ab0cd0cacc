"""What request handlers share: the app's keys, the caller of a request, the `public` mark."""

from __future__ import annotations

from typing import Any, Awaitable, Callable

from aiohttp import web

from jobvisor.config import Config
from jobvisor.protocol.common import Caller

from api_gateway.auth_store import AuthStore
from api_gateway.events import EventHub
from api_gateway.supervisor_client import SupervisorClient

CONFIG = web.AppKey("config", Config)
STORE = web.AppKey("store", AuthStore)
SUPERVISOR = web.AppKey("supervisor", SupervisorClient)
HUB = web.AppKey("hub", EventHub)
STREAMS = web.AppKey("streams", set)  # long-lived handler tasks, cancelled on shutdown
# set by the auth middleware (RequestKey: aiohttp >= 3.12; a plain key before)
CALLER: Any = web.RequestKey("caller", Caller) if hasattr(web, "RequestKey") else "caller"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def public(handler: Handler) -> Handler:
    """Mark a route that needs no token (status, OpenAPI document, GUI page)."""
    handler.public = True  # type: ignore[attr-defined]
    return handler


def caller_of(request: web.Request) -> Caller:
    return request[CALLER]


def supervisor_of(request: web.Request) -> SupervisorClient:
    return request.app[SUPERVISOR]


async def op(request: web.Request, message: Any) -> Any:
    return await request.app[SUPERVISOR].op(message)
