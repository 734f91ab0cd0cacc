"""The orchestrator's requests about many jobs at once: clear a queue, cancel or stop an agent,
the admins' cancel-all and shutdown; and the timers that execute workflows.

Each cancels through the one cancel path (`Supervisor.cancel`, i.e. `Dispatcher.cancel`), job
after job without an await in between: every row and transition goes into the store's next
batch, so clearing 10,000 queued jobs is one commit, and the reply waits for that commit.
An agent of another user is `NotFound`, like one that does not exist; the admin-only requests
are `Forbidden` for anyone else (the gateway refuses them first).
"""

from __future__ import annotations

import logging
from typing import Any, Awaitable, Callable, Iterable

from jobvisor.errors import Forbidden, NotFound
from jobvisor.ids import AgentId, UserId
from jobvisor.protocol.common import Caller
from jobvisor.protocol.system_requests import CancelAgentJobs, CancelAll, ClearQueue, ShutdownAgent, ShutdownServer
from jobvisor.protocol.workflow_requests import CreateTimer, DeleteTimer, ListTimers
from jobvisor.states import JobState
from supervisor.agents import Agent
from supervisor.compute_job import ComputeJob
from supervisor.core import Supervisor
from supervisor.system_events import SystemAction, emit_system

log = logging.getLogger(__name__)

NOT_STARTED = frozenset({JobState.QUEUED, JobState.WAITING})


def _require_admin(caller: Caller, what: str) -> None:
    if not caller.is_admin:
        raise Forbidden(f"{what} is for admins only")


def _cancel_reason(caller: Caller, owner: UserId, action: SystemAction) -> str:
    who = "user" if caller.user == owner else caller.user
    return f"canceled by {who} ({action})"


class OrchestratorHandlers:
    def __init__(self, core: Supervisor) -> None:
        self.core = core
        self.table: dict[type, Callable[[Any], Awaitable[Any]]] = {
            ClearQueue: self.clear_queue, CancelAgentJobs: self.cancel_agent_jobs, ShutdownAgent: self.shutdown_agent,
            CancelAll: self.cancel_all, ShutdownServer: self.shutdown_server,
            CreateTimer: self.create_timer, ListTimers: self.list_timers, DeleteTimer: self.delete_timer,
        }

    # ------------------------------------------------------------------ helpers

    def _cancel(self, caller: Caller, jobs: Iterable[ComputeJob], action: SystemAction) -> int:
        """Cancel `jobs` into the store's next batch; the number of them this request ended or
        is stopping (one already ended or being canceled is not counted; a workflow's
        dependent that the engine canceled on the way, because its dependency was, is)."""
        pending = [job for job in jobs if not job.state.is_terminal and job.cancel_reason is None]
        for job in pending:  # a second cancel of one (its dependency's took it) changes nothing
            self.core.cancel(job, _cancel_reason(caller, job.owner, action))
        return len(pending)

    async def _report(self, owner: UserId, action: SystemAction, data: dict) -> None:
        """The action's `system` event, in the same batch as its cancels; answered once committed."""
        emit_system(self.core.store, owner, action, data)
        await self.core.store.committed()

    def _agent(self, caller: Caller, agent_id: AgentId) -> Agent:
        agent = self.core.agents.by_id.get(agent_id)
        if agent is None or (agent.user != caller.user and not caller.is_admin):
            raise NotFound(f"no agent {agent_id!r}")
        return agent

    def _agent_jobs(self, agent: Agent) -> list[ComputeJob]:
        jobs = (self.core.jobs.get(job_id) for job_id in list(agent.jobs))
        return [job for job in jobs if job is not None and job.agent_id == agent.id]

    # ------------------------------------------------------------------ queue

    async def clear_queue(self, req: ClearQueue) -> dict:
        """Queued and waiting jobs: the caller's; admins: everyone's, or `user`'s."""
        caller = req.caller
        if req.user and req.user != caller.user:
            _require_admin(caller, "clearing another user's queue")
        only = UserId(req.user) if req.user else (None if caller.is_admin else UserId(caller.user))
        jobs = [j for j in self.core.jobs if j.state in NOT_STARTED and (only is None or j.owner == only)]
        canceled = self._cancel(caller, jobs, SystemAction.QUEUE_CLEAR)
        scope = {"user": only} if only is not None else {"all_users": True}
        await self._report(UserId(caller.user), SystemAction.QUEUE_CLEAR, {**scope, "canceled": canceled})
        log.info("queue clear by %s (user %s): %d jobs canceled", caller.user, only or "all", canceled)
        return {**scope, "canceled": canceled}

    # ------------------------------------------------------------------ agents

    async def cancel_agent_jobs(self, req: CancelAgentJobs) -> dict:
        agent = self._agent(req.caller, req.agent_id)
        canceled = self._cancel(req.caller, self._agent_jobs(agent), SystemAction.AGENT_CANCEL)
        await self._report(agent.user, SystemAction.AGENT_CANCEL,
                           {"agent_id": agent.id, "by": req.caller.user, "canceled": canceled})
        log.info("agent %s of user %s: %d jobs canceled by %s", agent.id, agent.user, canceled, req.caller.user)
        return {"agent": agent.view(), "canceled": canceled}

    async def shutdown_agent(self, req: ShutdownAgent) -> dict:
        """The agent's jobs are canceled and the agent is stopped through its driver."""
        agent = self._agent(req.caller, req.agent_id)
        canceled = self._cancel(req.caller, self._agent_jobs(agent), SystemAction.AGENT_SHUTDOWN)
        await self._report(agent.user, SystemAction.AGENT_SHUTDOWN,
                           {"agent_id": agent.id, "by": req.caller.user, "canceled": canceled})
        self.core.pool.retire(agent, f"shut down by {req.caller.user}", cancel_jobs=True)
        log.info("agent %s of user %s shut down by %s (%d jobs canceled)", agent.id, agent.user, req.caller.user, canceled)
        return {"agent": agent.view(), "canceled": canceled}

    # ------------------------------------------------------------------ admin

    async def cancel_all(self, req: CancelAll) -> dict:
        _require_admin(req.caller, "cancel_all")
        canceled = self._cancel(req.caller, list(self.core.jobs), SystemAction.CANCEL_ALL)
        await self._report(UserId(req.caller.user), SystemAction.CANCEL_ALL, {"canceled": canceled})
        log.warning("cancel_all by %s: %d jobs canceled", req.caller.user, canceled)
        return {"canceled": canceled}

    async def shutdown_server(self, req: ShutdownServer) -> dict:
        _require_admin(req.caller, "shutdown")
        log.warning("shutdown requested by admin %s", req.caller.user)
        await self._report(UserId(req.caller.user), SystemAction.SHUTDOWN, {"by": req.caller.user})
        self.core.request_stop()
        return {"shutting_down": True}

    # ------------------------------------------------------------------ timers

    async def create_timer(self, req: CreateTimer) -> dict:
        """A timer belongs to the workflow's owner (an admin may make one for any workflow)."""
        timer = self.core.timers.new(req.workflow_id, UserId(req.caller.user), at=req.at, every=req.every, cron=req.cron)
        workflow = await self.core.workflow_rows.get(req.workflow_id)
        if workflow is None or (workflow.owner != req.caller.user and not req.caller.is_admin):
            raise NotFound(f"no workflow {req.workflow_id!r}", field="workflow_id")
        timer.owner = workflow.owner
        return (await self.core.timers.add(timer)).view()

    async def list_timers(self, req: ListTimers) -> dict:
        owner = None if req.caller.is_admin else UserId(req.caller.user)
        return {"timers": [timer.view() for timer in self.core.timers.list(owner)]}

    async def delete_timer(self, req: DeleteTimer) -> dict:
        owner = None if req.caller.is_admin else UserId(req.caller.user)
        timer = await self.core.timers.delete(req.timer_id, owner)
        return {"id": timer.id, "deleted": True}
