"""The supervisor's view of agents: one per (user, kind), started on demand by a driver.

`acquire()` is the first step of every await-retry loop that needs an agent: it starts one
when there is none, waits (bounded) for it to connect, and answers with an `Acquire` value
instead of raising, so the caller re-checks its op and decides.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from drivers.base import AgentSpec, DriverBase
from jobvisor.errors import DriverError
from jobvisor.ids import AgentId, JobId, OpId, UserId, new_agent_id
from jobvisor.isotime import iso
from jobvisor.codec import Message
from jobvisor.secrets import hash_token, new_token, tokens_equal

log = logging.getLogger(__name__)


class AgentState(enum.StrEnum):
    STARTING = "starting"        # the driver is starting it, it has not said hello yet
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"  # its socket dropped; it may reconnect within the grace
    STOPPING = "stopping"
    DEAD = "dead"


class Acquire(enum.Enum):
    ACQUIRED = "acquired"
    RETRY = "retry"              # not yet: re-check the op, then ask again
    UNAVAILABLE = "unavailable"  # the driver's backend failed in a way that may pass: try later
    FAILED = "failed"            # cannot: the reason says why (permanent driver error, start timeout)


@dataclass(frozen=True)
class Acquired:
    result: Acquire
    agent: "Agent | None" = None
    reason: str = ""


class AgentLink(Protocol):
    def send(self, messages: list[Message]) -> None: ...
    def close(self, reason: str) -> None: ...


class Agent:
    def __init__(self, agent_id: AgentId, user: UserId, kind: str, token_hash: str) -> None:
        self.id = agent_id
        self.user = user
        self.kind = kind
        self.token_hash = token_hash
        self.state = AgentState.STARTING
        self.link: AgentLink | None = None
        self.pid: int | None = None
        self.host = ""
        self.connected_at: float | None = None
        self.idle_since = time.monotonic()
        self.jobs: set[JobId] = set()  # the jobs placed with it (running, starting, sent ahead)
        self.pending_ops: set[OpId] = set()
        self.changed = asyncio.Event()
        self.failure = ""
        self.failure_may_pass = False  # its start failed with an error that is not permanent
        self.known_before = False  # from the database at a restart: it had run before
        self.info: dict = {}
        # Messages waiting behind a run whose input files are being read (send_after_read):
        # whatever is sent meanwhile (a cancel of that run) must not overtake it.
        self._held: deque | None = None

    def set_state(self, state: AgentState) -> None:
        self.state = state
        self.changed.set()
        self.changed = asyncio.Event()

    def send(self, messages: list[Message]) -> bool:
        if self.state is not AgentState.CONNECTED or self.link is None:
            return False
        if self._held is not None:
            self._held.append(messages)
            return True
        self.link.send(messages)
        return True

    def send_after_read(self, read: Callable[[], list[Message]]) -> None:
        """Send what `read` makes in a worker thread (a run with the bytes of its input files),
        in order: anything sent meanwhile goes after it."""
        if self.state is not AgentState.CONNECTED or self.link is None:
            return
        if self._held is None:
            self._held = deque()
        future = asyncio.get_running_loop().run_in_executor(None, read)
        self._held.append(future)
        future.add_done_callback(lambda _: self._drain())

    def _drain(self) -> None:
        held = self._held
        while held:
            head = held[0]
            if isinstance(head, asyncio.Future):
                if not head.done():
                    return
                try:
                    head = head.result()
                except Exception:  # read() reports its own errors: this is a bug, logged
                    log.exception("agent %s: making a run's messages failed", self.id)
                    head = []
            held.popleft()
            if head and self.state is AgentState.CONNECTED and self.link is not None:
                self.link.send(head)
        self._held = None

    def check_token(self, token: str) -> bool:
        return tokens_equal(hash_token(token), self.token_hash)

    @property
    def busy(self) -> bool:
        return bool(self.jobs or self.pending_ops)

    def view(self) -> dict:
        return {
            "id": self.id, "user": self.user, "kind": self.kind, "state": str(self.state),
            "pid": self.pid, "host": self.host, "jobs": len(self.jobs),
            "connected_at": iso(self.connected_at),
        }


class AgentRegistry:
    def __init__(self, start_timeout: float) -> None:
        self.by_id: dict[AgentId, Agent] = {}
        self.current: dict[tuple[UserId, str], Agent] = {}
        self.start_timeout = start_timeout
        self.on_new_agent = lambda agent, token_hash: None  # persists the agent row

    def add_known(self, agent: Agent) -> None:
        """An agent from the database (a supervisor restart): it may reconnect."""
        agent.state = AgentState.DISCONNECTED
        agent.known_before = True
        self.by_id[agent.id] = agent
        self.current.setdefault((agent.user, agent.kind), agent)

    def forget(self, agent: Agent) -> None:
        self.by_id.pop(agent.id, None)
        if self.current.get((agent.user, agent.kind)) is agent:
            del self.current[(agent.user, agent.kind)]

    async def acquire(self, user: UserId, driver: DriverBase) -> Acquired:
        key = (user, driver.target)
        agent = self.current.get(key)
        if agent is None or agent.state in (AgentState.DEAD, AgentState.STOPPING):
            agent = self._new(user, driver.target)
            token = new_token("jva")
            agent.token_hash = hash_token(token)
            self.on_new_agent(agent, agent.token_hash)
            spec = AgentSpec(agent.id, user, driver.target, token, driver.config.agent_url)
            started = asyncio.ensure_future(self._start(agent, driver, spec))
            started.add_done_callback(lambda f: f.exception())
        if agent.state is AgentState.CONNECTED:
            return Acquired(Acquire.ACQUIRED, agent)
        if agent.state is AgentState.DEAD:
            return self._failed(agent)
        changed = agent.changed
        try:
            await asyncio.wait_for(changed.wait(), self.start_timeout)
        except asyncio.TimeoutError:
            if agent.state is AgentState.STARTING:
                agent.failure = f"the {driver.target} agent did not connect within {self.start_timeout:g} s"
                log.error("agent %s of user %s: %s", agent.id, user, agent.failure)
                return Acquired(Acquire.FAILED, agent, agent.failure)
        if agent.state is AgentState.DEAD:
            return self._failed(agent)
        return Acquired(Acquire.RETRY, agent)

    @staticmethod
    def _failed(agent: Agent) -> Acquired:
        """What a dead agent means to the jobs waiting for it: the failure of one that never
        connected is theirs (permanent, or one that may pass); one that died after it had run
        (lost, or never back after a restart) says nothing of the next one, so a new one is
        tried."""
        if agent.connected_at is not None or agent.known_before:
            return Acquired(Acquire.RETRY, agent)
        return Acquired(Acquire.UNAVAILABLE if agent.failure_may_pass else Acquire.FAILED, agent,
                        agent.failure or "the agent died")

    def _new(self, user: UserId, kind: str) -> Agent:
        agent = Agent(new_agent_id(), user, kind, "")
        self.by_id[agent.id] = agent
        self.current[(user, kind)] = agent
        return agent

    async def _start(self, agent: Agent, driver: DriverBase, spec: AgentSpec) -> None:
        try:
            agent.info = await driver.start_agent(spec)
            agent.pid = agent.info.get("pid")
        except DriverError as exc:
            log.error("cannot start a %s agent %s for user %s (%s): %s", driver.target, agent.id, agent.user,
                      "permanent" if exc.permanent else "may pass", exc.detail)
            agent.failure = exc.detail
            agent.failure_may_pass = not exc.permanent
            self.forget(agent)
            agent.set_state(AgentState.DEAD)
        except Exception as exc:  # a driver bug must fail the jobs, not hang them
            log.exception("the %s driver failed to start an agent for user %s", driver.target, agent.user)
            agent.failure = f"the {driver.target} driver failed: {exc}"
            self.forget(agent)
            agent.set_state(AgentState.DEAD)
