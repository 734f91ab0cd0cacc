"""Start and stop a supervisor (core + Tornado server) inside the running asyncio loop."""

from __future__ import annotations

import logging

import tornado.httpserver

from jobvisor.config import Config
from jobvisor.secrets import internal_secret_path, load_or_create_secret
from jobvisor.protocol.common import Reply
from jobvisor.protocol.registry import GatewayRequest
from supervisor.core import Supervisor
from supervisor.requests import RequestHandlers
from supervisor.web import make_app

log = logging.getLogger(__name__)


class LocalLink:
    """`jobvisor.link.LocalLink` for a gateway in this process."""

    def __init__(self, core: Supervisor) -> None:
        self._core = core
        self._handlers = RequestHandlers(core)

    async def request(self, request: GatewayRequest) -> Reply:
        return await self._handlers.answer(request)

    def subscribe(self):
        return self._core.bus.subscribe()

    def unsubscribe(self, queue) -> None:
        self._core.bus.unsubscribe(queue)


class RunningSupervisor:
    def __init__(self, core: Supervisor, server: tornado.httpserver.HTTPServer, url: str) -> None:
        self.core = core
        self.server = server
        self.url = url

    def local_link(self) -> LocalLink:
        return LocalLink(self.core)

    async def close(self) -> None:
        """Graceful: agents stop their jobs, everything is committed, then the socket closes."""
        await self.core.shutdown()
        self.server.stop()
        await self.server.close_all_connections()


async def start_supervisor(config: Config) -> RunningSupervisor:
    config.state_dir.mkdir(parents=True, exist_ok=True)
    secret = load_or_create_secret(internal_secret_path(config.state_dir))
    core = Supervisor(config)
    await core.start()
    server = tornado.httpserver.HTTPServer(make_app(core, secret), max_body_size=config.supervisor.max_message_bytes, xheaders=False)
    try:
        server.listen(config.server.supervisor_port, address=config.server.supervisor_host)
    except OSError as exc:
        await core.shutdown()
        from jobvisor.errors import ConfigError

        raise ConfigError(
            f"the supervisor cannot listen on {config.server.supervisor_host}:{config.server.supervisor_port}: {exc.strerror}"
        ) from exc
    log.info("supervisor listening on %s", config.supervisor_url)
    return RunningSupervisor(core, server, config.supervisor_url)
