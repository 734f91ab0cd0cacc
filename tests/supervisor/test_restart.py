"""A supervisor restarted on the same database: queued jobs queue again, active ones wait for
their agent and are reconciled, unclaimed ones become lost or are retried. Each test runs on
SQLite and on PostgreSQL (the `database` fixture)."""

from __future__ import annotations

from jobvisor.protocol import ForgetJobs, HelloAck, JobReport, JobSpec, RunJob
from jobvisor.states import JobState
from supervisor.core import Supervisor
from tests.supervisor.fakes import FakeDriver, eventually, make_config, report


async def started(tmp_path, database, **cfg) -> tuple[Supervisor, FakeDriver]:
    config = make_config(tmp_path, **{"prefetch": 0, **cfg}).replace("database", url=database.url)
    core = Supervisor(config)
    driver = core.drivers["fake"] = FakeDriver(core.config, core, cpus=1)
    await core.start()
    return core, driver


def crash(core: Supervisor) -> None:
    """Like SIGKILL: nothing is flushed or stopped; only what was committed survives."""
    for task in core._loops + list(core._tasks):
        task.cancel()
    if core.store._writer is not None:
        core.store._writer.cancel()


async def test_restart_requeues_queued_and_reconciles_running(tmp_path, database):
    core, driver = await started(tmp_path, database)
    running, queued = await core.submit("alice", [
        JobSpec(code="shell", params={"argv": ["sleep", "5"]}, driver="fake"),
        JobSpec(code="shell", params={"argv": ["true"]}, driver="fake"),
    ])
    await eventually(lambda: running.sent, what="first job sent")
    agent_id = running.agent_id
    core.on_agent_messages(core.agents.by_id[agent_id], [report(running.id, "running")])
    await core.store.committed()
    crash(core)
    await core.store.engine.dispose()

    core2, driver2 = await started(tmp_path, database, reconnect_grace=5.0)
    assert core2.jobs[queued.id].state is JobState.QUEUED
    assert core2.jobs[running.id].state is JobState.RUNNING
    link = driver2.connect(agent_id, [JobReport(running.id, 1, "running")])
    (ack,) = link.of(HelloAck)
    assert running.id in ack.log_offsets
    core2.on_agent_messages(core2.agents.by_id[agent_id], [report(running.id, "completed", exit_code=0)])
    await eventually(lambda: link.of(ForgetJobs), what="forget")
    assert (await core2.store.get_job(running.id)).state is JobState.COMPLETED
    await eventually(lambda: [m for m in link.of(RunJob) if m.job_id == queued.id], what="queued job dispatched")
    await core2.shutdown()


async def test_unclaimed_running_job_becomes_lost_after_grace(tmp_path, database):
    core, driver = await started(tmp_path, database)
    (job,) = await core.submit("alice", [JobSpec(code="shell", params={"argv": ["sleep", "5"]}, driver="fake")])
    await eventually(lambda: job.sent, what="sent")
    core.on_agent_messages(core.agents.by_id[job.agent_id], [report(job.id, "running")])
    await core.store.committed()
    crash(core)
    await core.store.engine.dispose()

    core2, _ = await started(tmp_path, database, reconnect_grace=0.2)
    await eventually(lambda: job.id not in core2.jobs or core2.jobs[job.id].state.is_terminal, what="reconciled")
    await core2.store.committed()
    stored = await core2.store.get_job(job.id)
    assert stored.state is JobState.LOST and "reconnect" in stored.reason
    await core2.shutdown()


async def test_job_sent_just_before_a_crash_is_adopted_not_run_twice(tmp_path, database):
    core, driver = await started(tmp_path, database)
    (first,) = await core.submit("alice", [JobSpec(code="shell", params={"argv": ["true"]}, driver="fake")])
    await eventually(lambda: first.sent, what="first sent")
    agent_id = first.agent_id
    core.on_agent_messages(core.agents.by_id[agent_id], [report(first.id, "completed", exit_code=0)])
    await core.store.committed()  # the agent's row and the first job are stored
    (job,) = await core.submit("alice", [JobSpec(code="shell", params={"argv": ["sleep", "5"]}, driver="fake")])
    core.store._writer.cancel()  # nothing more reaches the database
    await eventually(lambda: job.sent, what="sent")
    crash(core)  # `starting` was never committed: the database still says queued
    await core.store.engine.dispose()

    core2, driver2 = await started(tmp_path, database, reconnect_grace=5.0)
    assert core2.jobs[job.id].state is JobState.QUEUED
    await __import__("asyncio").sleep(0.2)
    assert not driver2.started, "a held-back job must not start a new agent"
    link = driver2.connect(agent_id, [JobReport(job.id, 1, "running")])
    assert core2.jobs[job.id].state is JobState.RUNNING
    await __import__("asyncio").sleep(0.2)
    assert not link.of(RunJob)  # adopted, not sent again
    await core2.shutdown()
