"""The supervisor's sockets (Tornado): the internal op endpoint for the gateway, the event
stream, and the agents' websocket. Each handler decodes, calls the core, encodes."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable
from typing import Any

import msgpack
import tornado.web
import tornado.websocket
from tornado.iostream import StreamClosedError

from jobvisor.errors import ErrorKind, InvalidRequest, ProtocolError
from jobvisor.codec import Message, decode, decode_frame, encode, encode_frame, pack, to_wire
from jobvisor.protocol.agent_wire import AGENT_ID_HEADER, AGENT_PATH, ErrorMessage, Hello
from jobvisor.protocol.common import PROTOCOL_VERSION, Reply, WireError
from jobvisor.protocol.registry import ALLOWED_FROM_AGENT, ALLOWED_GATEWAY_REQUESTS
from jobvisor.limits import limit_socket_buffer
from jobvisor.secrets import tokens_equal
from jobvisor.pacing import FRAME_COALESCE, Pacer
from supervisor.agents import Agent, AgentState
from supervisor.core import Supervisor
from supervisor.requests import RequestHandlers

log = logging.getLogger(__name__)

SECRET_HEADER = "X-Jobvisor-Secret"
UNPACKABLE = (OverflowError, TypeError, ValueError)  # what msgpack raises for a value it cannot pack


class _Internal(tornado.web.RequestHandler):
    def initialize(self, core: Supervisor, secret: str) -> None:
        self.core = core
        self.secret = secret

    def prepare(self) -> None:
        given = self.request.headers.get(SECRET_HEADER, "")
        if not given or not tokens_equal(given, self.secret):
            log.warning("internal request from %s with a wrong secret", self.request.remote_ip)
            raise tornado.web.HTTPError(401)

    def check_xsrf_cookie(self) -> None:  # not a browser endpoint
        return


class OpHandler(_Internal):
    """POST /internal/op: one GatewayRequest in, one Reply out (msgpack)."""

    def initialize(self, core: Supervisor, secret: str, handlers: RequestHandlers) -> None:
        super().initialize(core, secret)
        self.handlers = handlers

    async def post(self) -> None:
        try:
            request = decode(self.request.body, ALLOWED_GATEWAY_REQUESTS, self.core.cfg.max_message_bytes)
        except ProtocolError as exc:
            reply = Reply(ok=False, error=WireError(ErrorKind.INVALID, str(exc)))
        else:
            reply = await self.handlers.answer(request)
        self.set_header("Content-Type", "application/msgpack")
        self.finish(encode(reply))


class EventsHandler(_Internal):
    """GET /internal/events: an endless stream of msgpack Event maps."""

    async def get(self) -> None:
        self.set_header("Content-Type", "application/msgpack-stream")
        self.request.connection.stream.set_nodelay(True)  # events are small and latency matters
        queue = self.core.bus.subscribe()
        try:
            self.write(b"")
            await self.flush()
            while True:
                try:
                    batch = await asyncio.wait_for(queue.get(), 15.0)
                except asyncio.TimeoutError:
                    self.write(pack(None))  # keepalive, ignored by the reader
                    await self.flush()
                    continue
                if batch is None:
                    break
                while True:
                    self.write(b"".join(pack(to_wire(e)) for e in batch))
                    if queue.empty():
                        break
                    batch = queue.get_nowait()
                    if batch is None:
                        break
                await self.flush()
        except StreamClosedError:
            pass
        finally:
            self.core.bus.unsubscribe(queue)

    def on_connection_close(self) -> None:
        pass


class HealthHandler(tornado.web.RequestHandler):
    def get(self) -> None:
        self.finish({"ok": True})


class _Link:
    """Sends to one agent, batching everything queued in one loop turn into one frame."""

    def __init__(self, socket: "AgentSocket") -> None:
        self.socket = socket
        self.outbox: list[Message] = []
        self.closed = False
        self.pacer = Pacer(FRAME_COALESCE)

    def send(self, messages: list[Message]) -> None:
        if self.closed:
            return
        if not self.outbox:
            loop = asyncio.get_running_loop()
            delay = self.pacer.delay(loop.time())
            if delay > 0:  # a sustained stream: gather more into the next frame
                loop.call_later(delay, self._flush)
            else:
                loop.call_soon(self._flush)
        self.outbox.extend(messages)

    def _flush(self) -> None:
        self.pacer.sent(asyncio.get_running_loop().time())
        messages, self.outbox = self.outbox, []
        if self.closed or not messages:
            return
        try:
            frame = encode_frame(messages)
        except UNPACKABLE:
            frame = self._encode_apart(messages)
            if frame is None:
                return
        limit = self.socket.core.cfg.max_message_bytes
        try:
            if len(frame) <= limit:
                self.socket.write_message(frame, binary=True)
                return
            for part in _frames_under(messages, limit):  # runs with their input files
                self.socket.write_message(part, binary=True)
        except tornado.websocket.WebSocketClosedError:
            self.closed = True

    def _encode_apart(self, messages: list[Message]) -> bytes | None:
        """The frame of those `messages` that pack (None if none does). Each one that does not
        fails at once what waits for it: one bad value must neither take the other messages
        of its frame with it nor leave an op waiting for its timeout."""
        parts = []
        for message in messages:
            try:
                parts.append(pack(to_wire(message)))
            except UNPACKABLE as exc:
                self.socket.unsendable(message, exc)
        if not parts:
            return None
        return msgpack.Packer().pack_array_header(len(parts)) + b"".join(parts)

    def close(self, reason: str) -> None:
        if not self.closed:
            self._flush()
            self.closed = True
            self.socket.close(1000, reason[:120])


def _frames_under(messages: list[Message], limit: int) -> list[bytes]:
    """`messages` in order, in as few frames as keep each under the agent's message limit (the
    senders keep each message well under it: input files travel in slices of a quarter)."""
    frames: list[bytes] = []
    parts: list[bytes] = []
    size = 0
    for message in messages:
        part = pack(to_wire(message))
        if parts and size + len(part) + 8 > limit:
            frames.append(msgpack.Packer().pack_array_header(len(parts)) + b"".join(parts))
            parts, size = [], 0
        parts.append(part)
        size += len(part)
    if parts:
        frames.append(msgpack.Packer().pack_array_header(len(parts)) + b"".join(parts))
    return frames


class AgentSocket(tornado.websocket.WebSocketHandler):
    """The agents' websocket. The token is checked in `prepare`, before the upgrade."""

    def initialize(self, core: Supervisor) -> None:
        self.core = core
        self.agent: Agent | None = None
        self.link: _Link | None = None
        self.hello_seen = False

    def prepare(self) -> None:
        agent_id = self.request.headers.get(AGENT_ID_HEADER, "")
        auth = self.request.headers.get("Authorization", "")
        token = auth[7:] if auth.startswith("Bearer ") else ""
        agent = self.core.agents.by_id.get(agent_id)  # type: ignore[arg-type]
        if agent is None or not token or not agent.check_token(token) or agent.state is AgentState.DEAD:
            log.warning("agent connection refused from %s (agent id %r): unknown agent or wrong token", self.request.remote_ip, agent_id)
            raise tornado.web.HTTPError(401)
        self.agent = agent

    def get_compression_options(self) -> None:
        return None

    def open(self, *args: Any) -> None:
        self.set_nodelay(True)
        limit_socket_buffer(self.ws_connection.stream.socket, socket.SO_RCVBUF)
        self.link = _Link(self)

    def on_message(self, message: str | bytes) -> Awaitable[None] | None:
        """Decode and hand over one frame. While the log writer is behind (`LogWriter.full`),
        the awaitable returned holds the next frame back: Tornado reads no more from this
        socket until it resolves, so the agent's own send buffer fills and it holds its logs."""
        self._on_message(message)
        log_writer = self.core.store.log_writer
        return log_writer.wait_room() if log_writer.full() else None

    def _on_message(self, message: str | bytes) -> None:
        assert self.agent is not None and self.link is not None
        if isinstance(message, str):
            self.link.send([ErrorMessage("text frames are not accepted; send msgpack binary frames")])
            return
        try:
            messages, errors = decode_frame(message, ALLOWED_FROM_AGENT, self.core.cfg.max_message_bytes)
        except ProtocolError as exc:
            log.warning("agent %s sent an undecodable frame: %s", self.agent.id, exc)
            self.link.send([ErrorMessage(str(exc))])
            return
        for error in errors:
            log.warning("agent %s sent a bad message: %s", self.agent.id, error)
            self.link.send([ErrorMessage(str(error))])
        if not self.hello_seen:
            if not messages or not isinstance(messages[0], Hello):
                self.link.send([ErrorMessage("the first message must be hello", "hello")])
                return
            hello = messages.pop(0)
            if hello.protocol_version != PROTOCOL_VERSION or hello.agent_id != self.agent.id:
                detail = (f"protocol version {hello.protocol_version} is not supported (this supervisor speaks {PROTOCOL_VERSION})"
                          if hello.protocol_version != PROTOCOL_VERSION else "hello names another agent")
                log.error("agent %s: %s", self.agent.id, detail)
                self.link.send([ErrorMessage(detail, "hello")])
                self.link.close(detail)
                return
            self.hello_seen = True
            self.core.on_agent_connected(self.agent, self.link, hello)
        if messages:
            self.core.on_agent_messages(self.agent, messages)

    def unsendable(self, message: Message, exc: Exception) -> None:
        """A message for this agent that cannot be packed (a value that no check stopped):
        a request op gets its error reply now instead of waiting for its timeout. (A run
        always packs: its params were packed when the job was submitted.)"""
        assert self.agent is not None
        log.error("agent %s: a %s message cannot be encoded and is dropped: %s", self.agent.id, message.TYPE, exc)
        op_id = getattr(message, "op_id", None)
        if op_id:
            error = InvalidRequest(f"the {message.TYPE} request holds a value that cannot be sent to the agent: {exc}")
            self.core.replies.resolve(op_id, False, None, WireError.of(error))

    def on_close(self) -> None:
        if self.link is not None:
            self.link.closed = True
        if self.agent is not None and self.hello_seen:
            self.core.on_agent_disconnected(self.agent, self.link)


def make_app(core: Supervisor, secret: str) -> tornado.web.Application:
    handlers = RequestHandlers(core)
    return tornado.web.Application(
        [
            (r"/internal/op", OpHandler, {"core": core, "secret": secret, "handlers": handlers}),
            (r"/internal/events", EventsHandler, {"core": core, "secret": secret}),
            (r"/internal/health", HealthHandler),
            (AGENT_PATH, AgentSocket, {"core": core}),
        ],
        websocket_max_message_size=core.cfg.max_message_bytes,
        websocket_ping_interval=10,
        websocket_ping_timeout=10,
        max_body_size=core.cfg.max_message_bytes,
    )
