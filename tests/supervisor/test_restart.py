"""A supervisor restarted on the same database: queued jobs queue again, active ones wait for
their agent and are reconciled, unclaimed ones become lost or are retried. Each test runs on
SQLite and on PostgreSQL (the `database` fixture)."""

from __future__ import annotations

from jobvisor.protocol.agent_wire import ForgetJobs, HelloAck, JobReport, RunJob
from jobvisor.protocol.job_requests import JobSpec
from jobvisor.states import JobState
from supervisor.core import Supervisor
from tests.supervisor.fakes import FakeDriver, eventually, make_config, report


async def started(tmp_path, database, **cfg) -> tuple[Supervisor, FakeDriver]:
    config = make_config(tmp_path, **{"prefetch": 0, **cfg}).replace("database", url=database.url)
    core = Supervisor(config)
    driver = core.targets.drivers["fake"] = FakeDriver(core.config, core, cpus=1)
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
    await eventually(lambda: (running.agent_id is not None), what="first job sent")
    agent_id = running.agent_id
    core.on_agent_messages(core.agents.by_id[agent_id], [report(running.id, "running")])
    await core.store.committed()
    crash(core)
    await core.store.engine.dispose()

    core2, driver2 = await started(tmp_path, database, reconnect_grace=5.0)
    assert core2.jobs[queued.id].state is JobState.QUEUED
    assert core2.jobs[running.id].state is JobState.RUNNING
    link = driver2.connect(agent_id, [JobReport(running.id, 1, JobState.RUNNING)])
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
    await eventually(lambda: (job.agent_id is not None), what="sent")
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
    await eventually(lambda: (first.agent_id is not None), what="first sent")
    agent_id = first.agent_id
    core.on_agent_messages(core.agents.by_id[agent_id], [report(first.id, "completed", exit_code=0)])
    await core.store.committed()  # the agent's row and the first job are stored
    (job,) = await core.submit("alice", [JobSpec(code="shell", params={"argv": ["sleep", "5"]}, driver="fake")])
    core.store._writer.cancel()  # nothing more reaches the database
    await eventually(lambda: (job.agent_id is not None), what="sent")
    crash(core)  # `starting` was never committed: the database still says queued
    await core.store.engine.dispose()

    core2, driver2 = await started(tmp_path, database, reconnect_grace=5.0)
    assert core2.jobs[job.id].state is JobState.QUEUED
    await __import__("asyncio").sleep(0.2)
    assert not driver2.started, "a held-back job must not start a new agent"
    link = driver2.connect(agent_id, [JobReport(job.id, 1, JobState.RUNNING, at=123.5, started_at=123.5)])
    assert core2.jobs[job.id].state is JobState.RUNNING
    await core2.store.committed()
    history = [(t["state"], t["at"]) for t in await core2.store.transitions_of(job.id)]
    assert history[1:] == [("starting", 123.5), ("running", 123.5)], "a re-announced start is stamped in order"
    await __import__("asyncio").sleep(0.2)
    assert not link.of(RunJob)  # adopted, not sent again
    await core2.shutdown()


async def crashed_with(tmp_path, database, prepare, **cfg):
    """Run `prepare(core, driver)` on a supervisor, commit, crash it; start a second one on the
    same database, whose agents never come back unless the test connects them."""
    core, driver = await started(tmp_path, database, **cfg)
    result = await prepare(core, driver)
    await core.store.committed()
    crash(core)
    await core.store.engine.dispose()
    core2, driver2 = await started(tmp_path, database, reconnect_grace=0.2)
    return result, core2, driver2


async def history_of(core, job_id) -> list[tuple[int, str]]:
    await core.store.committed()
    return [(t["attempt"], t["state"]) for t in await core.store.transitions_of(job_id)]


async def test_a_job_that_may_have_started_is_never_queued_again_under_its_attempt(tmp_path, database):
    """The soak's bug: a job committed as `starting` whose agent did not come back after a
    restart went back to the queue as "not sent", and ran twice under attempt 1. It may have
    started: it is `lost`, or a new attempt while retries remain."""
    async def prepare(core, driver):
        once, twice = await core.submit("alice", [
            JobSpec(code="shell", params={"argv": ["sleep", "5"]}, driver="fake"),
            JobSpec(code="shell", params={"argv": ["sleep", "5"]}, driver="fake", max_retries=1),
        ])
        core.targets.queue("fake").cpus_total = 2
        core.dispatch.wake()
        await eventually(lambda: once.state is twice.state is JobState.STARTING, what="both sent")
        return once, twice

    (once, twice), core2, driver2 = await crashed_with(tmp_path, database, prepare)
    await eventually(lambda: once.id not in core2.jobs and core2.jobs[twice.id].attempt == 2, what="the grace's end")
    assert (await core2.store.get_job(once.id)).state is JobState.LOST
    assert await history_of(core2, once.id) == [(1, "queued"), (1, "starting"), (1, "lost")]
    assert (await history_of(core2, twice.id))[:4] == [(1, "queued"), (1, "starting"), (1, "lost"), (2, "queued")]
    await core2.shutdown()


async def test_a_job_sent_ahead_before_a_crash_waits_for_its_agent(tmp_path, database):
    """A job sent ahead is `queued` with its agent recorded. After a restart it is not queued
    again: its agent names it (it stays ahead, with its position), or the job is lost."""
    async def prepare(core, driver):
        import dataclasses

        core.cfg = core.dispatch.cfg = dataclasses.replace(core.cfg, prefetch=4)
        first, ahead, gone = await core.submit("alice", [
            JobSpec(code="shell", params={"argv": ["sleep", "5"]}, driver="fake") for _ in range(3)
        ])
        await eventually(lambda: first.state is JobState.STARTING, what="first sent")
        core.on_agent_messages(core.agents.by_id[first.agent_id], [report(first.id, "running")])
        await eventually(lambda: ahead.agent_id is not None and gone.agent_id is not None, what="sent ahead")
        assert ahead.state is gone.state is JobState.QUEUED
        return first, ahead, gone

    (first, ahead, gone), core2, driver2 = await crashed_with(tmp_path, database, prepare)
    agent_id = first.agent_id
    assert core2.jobs[ahead.id].state is JobState.QUEUED
    assert sorted(core2.queue_position(core2.jobs[j.id]) for j in (ahead, gone)) == [1, 2]
    link = driver2.connect(agent_id, [JobReport(first.id, 1, JobState.RUNNING), JobReport(ahead.id, 1, JobState.STARTING, prefetched=True)])
    assert core2.jobs[ahead.id].agent_id == agent_id and core2.queue_position(core2.jobs[ahead.id]) == 1
    # `gone` was sent ahead but the agent does not name it: it never reached the agent
    assert core2.jobs[gone.id].agent_id is None and core2.jobs[gone.id].attempt == 1
    core2.on_agent_messages(core2.agents.by_id[agent_id], [report(first.id, "completed", exit_code=0),
                                                          report(ahead.id, "running")])
    assert core2.jobs[ahead.id].state is JobState.RUNNING
    await core2.shutdown()
    assert not [m for m in link.of(RunJob) if m.job_id == ahead.id], "adopted, never sent twice"
