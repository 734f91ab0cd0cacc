"""Request ops to a job's agent (analysis, io): acquire the agent, send, await the reply.

Each has its own timeout, which fails that op only and never touches the job's run."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from jobvisor.errors import Unavailable
from jobvisor.ids import OpId
from jobvisor.codec import Message
from jobvisor.timing import backoff_delay
from supervisor.agents import Acquire, AgentRegistry, AgentState
from supervisor.compute_job import ComputeJob
from supervisor.ops import PendingReplies
from supervisor.targets import Targets


class AgentOps:
    def __init__(self, targets: Targets, agents: AgentRegistry, replies: PendingReplies) -> None:
        self._targets = targets
        self._agents = agents
        self.replies = replies

    async def call(self, job: ComputeJob, make: Callable[[OpId, str], Message], timeout: float, what: str) -> Any:
        """Await-retry: acquire the owner's agent of the job's driver (starting one if
        needed), re-check, send `make(op_id, run_dir)`, and await the reply."""
        driver = self._targets.driver(job.driver)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        tries = 0
        while True:
            got = await self._agents.acquire(job.owner, driver)
            if got.result in (Acquire.FAILED, Acquire.UNAVAILABLE):
                raise Unavailable(f"no agent to {what}: {got.reason}")
            if got.result is Acquire.ACQUIRED and got.agent is not None and got.agent.state is AgentState.CONNECTED:
                break
            tries += 1
            if loop.time() >= deadline:
                raise Unavailable(f"no agent connected in time to {what}")
            await asyncio.sleep(backoff_delay(tries, base=0.05, cap=1.0))
        agent = got.agent
        op_id, fut = self.replies.new()
        agent.pending_ops.add(op_id)
        agent.send([make(op_id, driver.run_dir(job.owner, job.id))])
        try:
            return await self.replies.wait(op_id, fut, max(0.1, deadline - loop.time()), what)
        finally:
            agent.pending_ops.discard(op_id)
            agent.idle_since = time.monotonic()
