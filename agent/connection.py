"""The websocket to the supervisor, kept thin: connect with the agent's token, announce the jobs
(`Hello`), decode frames and hand each message to the core, send the outbox's batches, and
reconnect with capped, jittered backoff while there is work. This is the core's `Comm`.

Log bytes and terminal reports are sent only after the supervisor's `HelloAck` (its log offsets
say where to resume); until then they wait in the run dir and in the job table."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import aiohttp

from jobvisor.errors import ProtocolError
from jobvisor.limits import limit_socket_buffer
from jobvisor.codec import Message, decode_frame
from jobvisor.protocol.agent_wire import AGENT_ID_HEADER, ErrorMessage, Hello, HelloAck, OpReply
from jobvisor.protocol.common import PROTOCOL_VERSION
from jobvisor.protocol.registry import ALLOWED_TO_AGENT
from jobvisor.timing import backoff_delay

from agent.ops import error_reply
from agent.outbox import Outbox

if TYPE_CHECKING:
    from agent.app import AgentSettings
    from agent.core import AgentCore

logger = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_AUTH = 3  # the supervisor refused our token: retrying cannot help
CONNECT_TIMEOUT = 15.0
TURN_BUDGET = 0.02  # seconds of message handling per loop turn
HEARTBEAT = 15.0  # seconds between pings; a peer silent for half of it more is gone
STABLE_CONNECTION = 5.0  # seconds a connection must last before the reconnect backoff starts over


class Connection:
    def __init__(self, settings: AgentSettings) -> None:
        self.settings = settings
        self.core: AgentCore | None = None  # set by the app once both exist
        self.on_stop: Callable[[str, bool], None] = lambda reason, cancel_jobs: None
        self.outbox = Outbox(
            settings.max_message_bytes,
            congestion_bytes=max(4 * settings.config.max_log_chunk, 1024 * 1024),
        )
        self.outbox.on_sent = self._sent
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._acked = False
        self._closing = asyncio.Event()
        self._connecting: asyncio.Task | None = None
        self._ops: set[asyncio.Task] = set()
        self._inbox: collections.deque[Message] = collections.deque()
        self._draining = False
        self.connections = 0  # how many times we connected (tests and logs)

    # ------------------------------------------------------------------ Comm

    @property
    def connected(self) -> bool:
        return self._ws is not None

    def send(self, message: Message) -> None:
        if self._ws is not None:
            self.outbox.put(message)

    def linked(self) -> bool:
        return self._ws is not None and self._acked

    def log_ready(self) -> bool:
        return self.linked() and not self.outbox.congested

    def run_op(self, op_id: str, make_reply: Callable[[], Awaitable[OpReply]]) -> None:
        task = asyncio.get_running_loop().create_task(self._run_op(op_id, make_reply))
        self._ops.add(task)
        task.add_done_callback(self._ops.discard)

    async def _run_op(self, op_id: str, make_reply: Callable[[], Awaitable[OpReply]]) -> None:
        try:
            reply = await make_reply()
        except Exception as exc:
            logger.exception("agent %s: op %s failed", self.settings.agent_id, op_id)
            reply = error_reply(op_id, exc)
        self.send(reply)

    def stop(self, reason: str, cancel_jobs: bool) -> None:
        self.on_stop(reason, cancel_jobs)

    def _sent(self) -> None:
        """The outbox wrote what it held: output left behind for want of room goes now."""
        if self.core is not None and self.core.log_backlog and self.log_ready():
            try:
                self.core.ship_backlog()
            except Exception:
                logger.exception("agent %s: shipping the log backlog failed", self.settings.agent_id)

    # ------------------------------------------------------------------ the loop

    async def run(self) -> int:
        """Connect, serve, reconnect; return the exit code once closed, refused or given up."""
        agent_id = self.settings.agent_id
        headers = {"Authorization": f"Bearer {self.settings.token}", AGENT_ID_HEADER: agent_id}
        loop = asyncio.get_running_loop()
        attempt = 0
        offline_since = loop.time()
        async with aiohttp.ClientSession() as session:
            while not self._closing.is_set():
                self._connecting = loop.create_task(asyncio.wait_for(
                    session.ws_connect(
                        self.settings.url, headers=headers, max_msg_size=self.settings.max_message_bytes,
                        heartbeat=HEARTBEAT, autoping=True,
                    ),
                    CONNECT_TIMEOUT,
                ))
                try:
                    ws = await self._connecting
                except asyncio.CancelledError:
                    if not self._closing.is_set():
                        raise
                    break
                except aiohttp.WSServerHandshakeError as exc:
                    if exc.status in (401, 403):
                        logger.error(
                            "agent %s: the supervisor at %s refused our token (HTTP %d): check JOBVISOR_AGENT_TOKEN; giving up",
                            agent_id, self.settings.url, exc.status,
                        )
                        return EXIT_AUTH
                    logger.warning("agent %s: websocket upgrade refused by %s: HTTP %d %s", agent_id, self.settings.url, exc.status, exc.message)
                except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                    log = logger.warning if attempt < 3 else logger.debug
                    log("agent %s: cannot connect to %s: %s", agent_id, self.settings.url, exc or type(exc).__name__)
                else:
                    if self._closing.is_set():
                        await ws.close()
                        break
                    connected_at = loop.time()
                    limit_socket_buffer(ws.get_extra_info("socket"), socket.SO_SNDBUF)
                    await self._serve(ws)
                    offline_since = loop.time()
                    if offline_since - connected_at >= STABLE_CONNECTION:
                        attempt = 0  # a link closed at once (a hello refused) keeps backing off
                if self._closing.is_set():
                    break
                assert self.core is not None
                offline = loop.time() - offline_since
                if not self.core.has_running() and offline >= self.settings.config.give_up_after:
                    logger.warning("agent %s: no connection for %.0fs and no running job: exiting", agent_id, offline)
                    return EXIT_OK
                delay = backoff_delay(attempt, cap=self.settings.config.max_backoff)
                attempt += 1
                try:
                    await asyncio.wait_for(self._closing.wait(), delay)
                except TimeoutError:
                    pass
        return EXIT_OK

    async def _serve(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        assert self.core is not None
        agent_id = self.settings.agent_id
        self.connections += 1
        self.outbox.clear()  # whatever was queued offline is in the Hello or resent after HelloAck
        self._inbox = collections.deque(m for m in self._inbox if not isinstance(m, HelloAck))  # a stale ack
        self._ws, self._acked = ws, False
        hello = Hello(agent_id, PROTOCOL_VERSION, os.getpid(), self.settings.hostname, jobs=self.core.hello_reports())
        self.outbox.put(hello)
        logger.info("agent %s: connected to %s, announcing %d job(s)", agent_id, self.settings.url, len(hello.jobs))
        pump = asyncio.get_running_loop().create_task(self.outbox.pump(ws.send_bytes, lambda: bool(self.core and self.core.prefetched)))
        pump.add_done_callback(lambda task: task.cancelled() or asyncio.ensure_future(ws.close()))
        try:
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.BINARY:
                    self._on_frame(msg.data)
                elif msg.type == aiohttp.WSMsgType.TEXT:
                    logger.warning("agent %s: text frame from the supervisor ignored", agent_id)
                    self.send(ErrorMessage("text frames are not part of the protocol: send msgpack binary frames"))
                elif msg.type == aiohttp.WSMsgType.ERROR:
                    logger.warning("agent %s: websocket error: %s", agent_id, ws.exception())
                    break
        finally:
            self._ws, self._acked = None, False
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):  # or the send that found the socket gone
                await pump
            if not ws.closed:
                await ws.close()
        logger.warning("agent %s: disconnected from %s (close code %s)", agent_id, self.settings.url, ws.close_code)

    def _on_frame(self, data: bytes) -> None:
        assert self.core is not None
        try:
            messages, errors = decode_frame(data, ALLOWED_TO_AGENT, self.settings.max_message_bytes)
        except ProtocolError as exc:
            logger.warning("agent %s: undecodable frame from the supervisor: %s", self.settings.agent_id, exc)
            self.send(ErrorMessage(f"undecodable frame: {exc}"))
            return
        for error in errors:
            logger.warning("agent %s: bad message from the supervisor: %s", self.settings.agent_id, error)
            self.send(ErrorMessage(str(error)))
        if messages:
            self._inbox.extend(messages)
            if not self._draining:
                self._draining = True
                self._drain()

    def _drain(self) -> None:
        """Hand queued messages to the core in order, for at most TURN_BUDGET seconds per loop
        turn: a frame of thousands of runs must not stall pings, logs and replies meanwhile."""
        assert self.core is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + TURN_BUDGET
        while self._inbox:
            message = self._inbox.popleft()
            if isinstance(message, HelloAck):
                self._acked = self._ws is not None
            try:
                self.core.handle(message)
            except Exception as exc:
                logger.exception("agent %s: handling %s failed", self.settings.agent_id, message.TYPE)
                self.send(ErrorMessage(f"the agent failed handling {message.TYPE}: {type(exc).__name__}: {exc}", ref_type=message.TYPE))
            if loop.time() >= deadline and self._inbox:
                loop.call_soon(self._drain)
                return
        self._draining = False

    async def flushed(self, timeout: float) -> bool:
        """Wait (bounded) until everything queued has been written to the socket."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._ws is not None and not self.outbox.empty and loop.time() < deadline:
            await asyncio.sleep(0.01)
        return self.outbox.empty

    async def close(self) -> None:
        self._closing.set()
        if self._connecting is not None and not self._connecting.done():
            self._connecting.cancel()
        for task in list(self._ops):
            task.cancel()
        if self._ws is not None:
            await self._ws.close()
