"""Start and stop a supervisor (core + Tornado server) inside the running asyncio loop: its
lock and port claimed first (`supervisor.instance_lock`), then the core started on them."""

from __future__ import annotations

import logging
import socket

import tornado.httpserver
import tornado.netutil

from jobvisor.config import Config
from jobvisor.errors import ListenError
from jobvisor.secrets import internal_secret_path, load_or_create_secret
from jobvisor.protocol.common import Reply
from jobvisor.protocol.registry import GatewayRequest
from supervisor.core import Supervisor
from supervisor.instance_lock import SupervisorLock
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
    def __init__(self, core: Supervisor, server: tornado.httpserver.HTTPServer, url: str, lock: SupervisorLock) -> None:
        self.core = core
        self.server = server
        self.url = url
        self.lock = lock

    def local_link(self) -> LocalLink:
        return LocalLink(self.core)

    async def close(self) -> None:
        """Graceful: agents stop their jobs, everything is committed, then the socket closes
        and the state dir and database are free for the next supervisor."""
        try:
            await self.core.shutdown()
            self.server.stop()
            await self.server.close_all_connections()
        finally:
            await self.lock.release()


class ClaimedSupervisor:
    """What a supervisor holds before it starts: its lock (one supervisor per database) and
    its listening socket. Nothing of the state dir or the database is opened yet, so a refusal
    (another supervisor, a port taken) leaves no trace; `jobvisor up` claims the gateway's
    port in between, for the same reason."""

    def __init__(self, config: Config, lock: SupervisorLock, sockets: list[socket.socket]) -> None:
        self.config = config
        self.lock = lock
        self.sockets = sockets

    async def start(self) -> RunningSupervisor:
        """Migrations, recovery, then serving on the claimed socket."""
        config = self.config
        try:
            secret = load_or_create_secret(internal_secret_path(config.state_dir))
            core = Supervisor(config)
            await core.start()
        except BaseException:
            await self.release()
            raise
        server = tornado.httpserver.HTTPServer(make_app(core, secret), max_body_size=config.supervisor.max_message_bytes,
                                               xheaders=False)
        server.add_sockets(self.sockets)
        log.info("supervisor listening on %s", config.supervisor_url)
        return RunningSupervisor(core, server, config.supervisor_url, self.lock)

    async def release(self) -> None:
        """Give up without starting."""
        for sock in self.sockets:
            sock.close()
        await self.lock.release()


async def claim_supervisor(config: Config, what: str = "jobvisor supervisor") -> ClaimedSupervisor:
    """The lock, then the port. InUse: another supervisor holds the state dir or the database;
    ListenError: the port cannot be bound. `what` names this process in the lock, for the
    refusal a second one gets ("another jobvisor up (pid ...)")."""
    config.state_dir.mkdir(parents=True, exist_ok=True)
    lock = await SupervisorLock.take(config, what)
    host, port = config.server.supervisor_host, config.server.supervisor_port
    try:
        sockets = tornado.netutil.bind_sockets(port, address=host)
    except OSError as exc:
        await lock.release()
        raise ListenError("supervisor", host, port, exc) from exc
    return ClaimedSupervisor(config, lock, sockets)


async def start_supervisor(config: Config, what: str = "jobvisor supervisor") -> RunningSupervisor:
    return await (await claim_supervisor(config, what)).start()
