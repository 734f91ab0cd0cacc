"""The agents' life cycle as the supervisor sees it: connected, dropped (with a grace to come
back), idle (stopped after the driver's idle timeout), and dead (its jobs end).

Acquiring an agent (starting one through its driver, waiting for its hello) is
`AgentRegistry.acquire`; this module reacts to what happens to agents afterwards.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from jobvisor.config import SupervisorConfig
from jobvisor.errors import InvalidRequest, Unavailable
from jobvisor.ids import AgentId
from jobvisor.protocol.agent_wire import Hello, KillAgent
from jobvisor.tasks import Tasks
from supervisor.agents import Agent, AgentLink, AgentRegistry, AgentState
from supervisor.jobs import JobBook
from supervisor.ops import PendingReplies
from supervisor.targets import Targets

log = logging.getLogger(__name__)


class AgentPool:
    def __init__(self, cfg: SupervisorConfig, registry: AgentRegistry, targets: Targets, jobs: JobBook,
                 replies: PendingReplies, tasks: Tasks, wake: Callable[[], None]) -> None:
        self.cfg = cfg
        self.registry = registry
        self._targets = targets
        self._jobs = jobs
        self._replies = replies
        self._tasks = tasks
        self._wake = wake
        self.on_dead: Callable[[Agent], None] = lambda agent: None  # what else follows a death (pending forgets)
        self.stopping = False  # the supervisor is shutting down: agents leaving is expected

    # ------------------------------------------------------------------ connect and drop

    def connected(self, agent: Agent, link: AgentLink, hello: Hello) -> bool:
        """The agent said hello. True when it is the very process we knew under this id: it
        keeps every job it was sent until told to forget it, so a job it does not name never
        reached it."""
        if agent.link is not None and agent.link is not link:
            agent.link.close("replaced by a new connection")
        agent.link = link
        same_process = agent.pid is not None and (agent.pid, agent.host) == (hello.pid, hello.hostname)
        if not same_process:  # kept, so that after a restart its next hello is known as the same process's
            agent.info = {**agent.info, "hello": {"pid": hello.pid, "host": hello.hostname}}
            self._jobs.store.update_agent(agent.id, agent.info)
        agent.pid = hello.pid
        agent.host = hello.hostname
        agent.connected_at = time.time()
        agent.idle_since = time.monotonic()
        self.registry.current[(agent.user, agent.kind)] = agent
        try:
            self._targets.driver(agent.kind).adopt_agent(agent.id, agent.user, hello.pid, hello.hostname)
        except InvalidRequest as exc:  # a target no longer configured: it can still report its jobs
            log.warning("agent %s of user %s: its driver %s cannot be made: %s", agent.id, agent.user, agent.kind, exc.detail)
        agent.set_state(AgentState.CONNECTED)
        log.info("agent %s of user %s connected (pid %s on %s, %d jobs)", agent.id, agent.user, hello.pid,
                 hello.hostname, len(hello.jobs))
        return same_process

    def disconnected(self, agent: Agent, link: AgentLink) -> None:
        if agent.link is not link:
            return
        agent.link = None
        if agent.state in (AgentState.CONNECTED, AgentState.STARTING):
            agent.set_state(AgentState.DISCONNECTED)
            (log.info if self.stopping else log.warning)("agent %s of user %s disconnected; it has %g s to come back",
                                                         agent.id, agent.user, self.cfg.agent_lost_grace)
            self._tasks.spawn(self._expect_reconnect(agent, agent.connected_at))
        self._replies.fail_all(agent.pending_ops, Unavailable("the agent disconnected"))

    async def _expect_reconnect(self, agent: Agent, connected_at: float | None) -> None:
        """Dead unless it came back within the grace. `connected_at` tells this drop from a
        later one (that one has its own full grace). Dead first, then stopped: an agent that
        comes back while its process is being stopped is refused, not counted alive."""
        await asyncio.sleep(self.cfg.agent_lost_grace)
        if agent.state is AgentState.DISCONNECTED and agent.connected_at == connected_at:
            self.dead(agent, f"it did not reconnect within {self.cfg.agent_lost_grace:g} s")
            await self.stop(agent)

    def exited(self, agent_id: AgentId, reason: str) -> None:
        """Its driver saw the agent's process end."""
        agent = self.registry.by_id.get(agent_id)
        if agent is not None:
            self.dead(agent, reason)

    # ------------------------------------------------------------------ death

    def dead(self, agent: Agent, reason: str) -> None:
        """The agent is gone for good: every job placed with it may have started there, so
        each ends (`lost`, a new attempt while retries remain; `canceled` if being canceled)."""
        if agent.state is AgentState.DEAD:
            return
        expected = self.stopping or agent.state is AgentState.STOPPING
        (log.info if expected else log.warning)("agent %s of user %s is gone: %s", agent.id, agent.user, reason)
        agent.failure = reason
        self.registry.forget(agent)
        agent.set_state(AgentState.DEAD)
        self._jobs.store.remove_agent(agent.id)
        now = time.time()
        for job_id in list(agent.jobs):
            job = self._jobs.get(job_id)
            if job is None or job.state.is_terminal or job.agent_id != agent.id:
                continue
            self._jobs.lose_or_cancel(job, f"its agent was lost: {reason}", now)
        agent.jobs.clear()
        self._replies.fail_all(agent.pending_ops, Unavailable(f"the agent was lost: {reason}"))
        if agent.link is not None:
            agent.link.close(reason)
        self.on_dead(agent)
        self._wake()

    # ------------------------------------------------------------------ stop and idle

    async def stop(self, agent: Agent) -> None:
        driver = self._targets.drivers.get(agent.kind)
        if driver is not None:
            try:
                await driver.stop_agent(agent.id)
            except Exception:
                log.exception("stopping agent %s of user %s failed", agent.id, agent.user)

    async def stop_all(self, reason: str) -> None:
        for agent in list(self.registry.by_id.values()):
            agent.send([KillAgent(reason=reason, cancel_jobs=True)])

    async def idle_loop(self) -> None:
        """Stop agents idle for longer than their driver's idle_timeout."""
        while True:
            # at most a second: a driver made later (with a shorter timeout) is honoured soon
            await asyncio.sleep(max(0.1, min(self._targets.shortest_idle_timeout() / 4, 1.0)))
            now = time.monotonic()
            for agent in list(self.registry.by_id.values()):
                if (agent.state is AgentState.CONNECTED and not agent.busy
                        and now - agent.idle_since > self._targets.idle_timeout(agent.kind)):
                    log.info("agent %s of user %s idle for %.0f s: stopping it", agent.id, agent.user, now - agent.idle_since)
                    self.retire(agent, "idle", cancel_jobs=False)

    def retire(self, agent: Agent, reason: str, *, cancel_jobs: bool) -> None:
        """Stop the agent through its driver: told first (it stops its jobs if `cancel_jobs`),
        then its process. Its place is free at once: the next job of its user and driver
        acquires a new agent."""
        if agent.state in (AgentState.STOPPING, AgentState.DEAD):
            return
        agent.send([KillAgent(reason=reason, cancel_jobs=cancel_jobs)])
        agent.set_state(AgentState.STOPPING)
        self._tasks.spawn(self._stop_retired(agent, reason))

    async def _stop_retired(self, agent: Agent, reason: str) -> None:
        """Once its driver has stopped it, the agent is gone: what it still had ends
        (`canceled` for the jobs being canceled). A driver that watches its agents' processes
        may have said so already; one that does not (sbatch, whose stop cancels its watch)
        relies on this, or the agent would stay `stopping` for good."""
        await self.stop(agent)
        self.dead(agent, f"stopped: {reason}")
