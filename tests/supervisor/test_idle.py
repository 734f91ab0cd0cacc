"""Idle agents are stopped after their own driver's idle_timeout, not another driver's."""

from __future__ import annotations

import asyncio

from jobvisor.protocol.agent_wire import KillAgent
from jobvisor.protocol.job_requests import JobSpec
from jobvisor.states import JobState
from supervisor.agents import AgentState
from tests.supervisor.fakes import FakeDriver, eventually, report


class QuickDriver(FakeDriver):
    kind = "quick"

    @property
    def idle_timeout(self) -> float:
        return 0.3


class PatientDriver(FakeDriver):
    kind = "patient"

    @property
    def idle_timeout(self) -> float:
        return 3600.0


async def run_one(core, driver: str):
    (job,) = await core.submit("alice", [JobSpec(code="shell", params={"argv": ["true"]}, driver=driver)])
    await eventually(lambda: job.state is JobState.STARTING and (job.agent_id is not None), what=f"job sent on {driver}")
    agent = core.agents.by_id[job.agent_id]
    core.on_agent_messages(agent, [report(job.id, "completed", exit_code=0)])
    assert job.state is JobState.COMPLETED
    return agent


async def test_each_driver_has_its_own_idle_timeout(core):
    quick = core.targets.drivers["quick"] = QuickDriver(core.config, core)
    patient = core.targets.drivers["patient"] = PatientDriver(core.config, core)
    quick_agent = await run_one(core, "quick")
    patient_agent = await run_one(core, "patient")
    assert not quick_agent.busy and not patient_agent.busy

    await eventually(lambda: quick_agent.state is not AgentState.CONNECTED, timeout=5, what="the quick agent stopped")
    assert quick.links[quick_agent.id].of(KillAgent)[0].reason == "idle"
    await asyncio.sleep(0.5)  # a few more rounds of the idle loop
    assert patient_agent.state is AgentState.CONNECTED and not patient.links[patient_agent.id].of(KillAgent)
