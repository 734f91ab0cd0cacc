"""A planned stop (`Supervisor.shutdown`: SIGTERM, Ctrl-C, POST /admin/shutdown) is not an end:
each run it stops is committed `queued` again as its job's next attempt, uncharged against
`max_retries`, and runs when a supervisor starts on the same database. A job queued at the stop
stays queued under its attempt; a job being canceled stays canceled. Against the recording fake
agent, on SQLite and on PostgreSQL (the `database` fixture)."""

from __future__ import annotations

import asyncio

from jobvisor.protocol.agent_wire import KillAgent, RunJob
from jobvisor.protocol.job_requests import JobSpec
from jobvisor.states import JobState
from supervisor.compute_job import ComputeJob
from supervisor.core import Supervisor
from supervisor.jobs import INTERRUPTED, NOT_STARTED
from tests.supervisor.fakes import FakeDriver, eventually, make_config, report

STOP = "the supervisor is shutting down"  # what the agents are told (KillAgent), and report back


async def started(tmp_path, database, **cfg) -> tuple[Supervisor, FakeDriver]:
    config = make_config(tmp_path, **cfg).replace("database", url=database.url)
    core = Supervisor(config)
    driver = core.targets.drivers["fake"] = FakeDriver(core.config, core, cpus=1)
    await core.start()
    return core, driver


def sleeper(**kw) -> JobSpec:
    return JobSpec(code="shell", params={"argv": ["sleep", "5"]}, driver="fake", **kw)


async def running(core: Supervisor, job) -> None:
    await eventually(lambda: job.agent_id is not None, what="sent")
    core.on_agent_messages(core.agents.by_id[job.agent_id], [report(job.id, "running", started_at=1.0)])


async def stop_while(core: Supervisor, driver: FakeDriver, agent_reports) -> None:
    """Stop `core` as `up` does; once its agents are told to stop, they report `agent_reports`
    (a list of StatusUpdate, by agent id)."""
    stopping = asyncio.create_task(core.shutdown())
    await eventually(lambda: all(link.of(KillAgent) for link in driver.links.values()), what="agents told to stop")
    for agent_id, messages in agent_reports.items():
        core.on_agent_messages(core.agents.by_id[agent_id], messages)
    await stopping


async def history_of(core: Supervisor, job_id) -> list[tuple[int, str, str]]:
    await core.store.committed()
    return [(t["attempt"], t["state"], t["reason"]) for t in await core.store.transitions_of(job_id)]


async def test_a_running_job_the_stop_cancels_runs_again_as_its_next_attempt(tmp_path, database):
    core, driver = await started(tmp_path, database)
    (job,) = await core.submit("alice", [sleeper()])  # max_retries 0
    await running(core, job)
    agent_id = job.agent_id
    await stop_while(core, driver, {agent_id: [report(job.id, "canceled", reason=STOP, started_at=1.0, exit_code=-15)]})

    core2, driver2 = await started(tmp_path, database)
    stored = await core2.store.get_job(job.id)
    assert (stored.state, stored.attempt, stored.interrupted, stored.reason) == (JobState.QUEUED, 2, 1, INTERRUPTED)
    assert stored.exit_code is None and stored.started_at is None and stored.agent_id is None
    link = await _first_link(driver2)
    await eventually(lambda: [m for m in link.of(RunJob) if m.job_id == job.id], what="attempt 2 sent")
    (run,) = [m for m in link.of(RunJob) if m.job_id == job.id]
    assert run.attempt == 2
    core2.on_agent_messages(core2.agents.by_id[run_agent(core2, job.id)], [
        report(job.id, "running", attempt=2), report(job.id, "completed", attempt=2, exit_code=0)])
    history = await history_of(core2, job.id)
    assert [(a, s) for a, s, _ in history] == [(1, "queued"), (1, "starting"), (1, "running"), (2, "queued"),
                                               (2, "starting"), (2, "running"), (2, "completed")]
    assert history[3][2] == INTERRUPTED
    await core2.shutdown()


async def test_a_run_whose_agent_does_not_report_by_the_timeout_is_interrupted_too(tmp_path, database):
    core, driver = await started(tmp_path, database, shutdown_timeout=0.1)
    (job,) = await core.submit("alice", [sleeper()])
    await running(core, job)
    await core.shutdown()  # the fake agent never answers the KillAgent

    core2, driver2 = await started(tmp_path, database, reconnect_grace=0.2)
    stored = await core2.store.get_job(job.id)
    assert (stored.state, stored.attempt, stored.reason) == (JobState.QUEUED, 2, INTERRUPTED)
    await core2.shutdown()


async def test_a_job_being_canceled_stays_canceled(tmp_path, database):
    core, driver = await started(tmp_path, database)
    (job,) = await core.submit("alice", [sleeper()])
    await running(core, job)
    core.cancel(job)  # the user's cancel, in flight when the stop comes: the agent is stopping the job for it
    await stop_while(core, driver, {job.agent_id: [report(job.id, "canceled", reason="canceled by user", started_at=1.0)]})

    core2, _ = await started(tmp_path, database)
    stored = await core2.store.get_job(job.id)
    assert (stored.state, stored.attempt, stored.reason) == (JobState.CANCELED, 1, "canceled by user")
    await core2.shutdown()


async def test_queued_jobs_stay_queued_under_their_attempt_also_one_sent_ahead(tmp_path, database):
    core, driver = await started(tmp_path, database, prefetch=1)
    first, ahead, queued = await core.submit("alice", [sleeper(), sleeper(), sleeper()])
    await running(core, first)
    await eventually(lambda: ahead.agent_id is not None, what="one sent ahead")
    assert ahead.state is queued.state is JobState.QUEUED and queued.agent_id is None
    agent_id = first.agent_id
    # the agent drops what waits in its FIFO first (never started), then stops the running one
    await stop_while(core, driver, {agent_id: [report(ahead.id, "canceled", reason=STOP),
                                              report(first.id, "canceled", reason=STOP, started_at=1.0)]})

    core2, _ = await started(tmp_path, database)
    for job, reason in ((ahead, NOT_STARTED), (queued, "submitted")):
        stored = await core2.store.get_job(job.id)
        assert (stored.state, stored.attempt, stored.agent_id, stored.reason) == (JobState.QUEUED, 1, None, reason)
        assert [(a, s) for a, s, _ in await history_of(core2, job.id)] == [(1, "queued")]
    assert (await core2.store.get_job(first.id)).attempt == 2
    await core2.shutdown()


async def test_an_interrupted_attempt_does_not_count_against_max_retries(tmp_path, database):
    """Interrupted once, each job then loses its agent: the one with no retries ends `lost` (its
    budget is its own, not raised by the stop), the one with a retry gets it."""
    core, driver = await started(tmp_path, database, shutdown_timeout=0.1)
    none_left, one_left = await core.submit("alice", [sleeper(), sleeper(max_retries=1)])
    core.targets.queue("fake").cpus_total = 2
    core.dispatch.wake()
    await running(core, none_left)
    await running(core, one_left)
    await core.shutdown()

    core2, driver2 = await started(tmp_path, database, reconnect_grace=0.2, retry_backoff=0.0)
    link = await _first_link(driver2)
    core2.targets.queue("fake").cpus_total = 2
    core2.dispatch.wake()
    await eventually(lambda: {m.job_id for m in link.of(RunJob)} == {none_left.id, one_left.id}, what="both sent")
    agent = core2.agents.by_id[run_agent(core2, none_left.id)]
    core2.pool.dead(agent, "it vanished")
    await core2.store.committed()
    assert (await core2.store.get_job(none_left.id)).state is JobState.LOST
    assert core2.jobs[one_left.id].attempt == 3
    history = await history_of(core2, one_left.id)
    lost = next(i for i, (a, s, _) in enumerate(history) if s == "lost")
    assert [(a, s) for a, s, _ in history[lost:lost + 2]] == [(2, "lost"), (3, "queued")], history
    assert history[lost + 1][2].startswith("retrying, attempt 3 of 3 after: its agent was lost"), history
    await core2.shutdown()


async def _first_link(driver: FakeDriver):
    await eventually(lambda: driver.links, what="an agent started")
    return next(iter(driver.links.values()))


def run_agent(core: Supervisor, job_id) -> str:
    return core.jobs[job_id].agent_id


def test_an_interrupted_attempt_is_added_to_what_max_retries_allows():
    def job(max_retries: int) -> ComputeJob:
        return ComputeJob(id="j1", owner="alice", code="shell", spec=ComputeJob.pack_spec({}, {}), driver="fake",
                          cpus=1, created_at=0.0, state=JobState.RUNNING, max_retries=max_retries)

    none, one = job(0), job(1)
    assert (none.retries_left, one.retries_left) == (False, True)
    transition = none.retry_interrupted(INTERRUPTED, 5.0)
    assert (transition.attempt, transition.state, transition.previous) == (2, JobState.QUEUED, JobState.RUNNING)
    one.retry_interrupted(INTERRUPTED, 5.0)
    assert (none.attempt, none.interrupted, none.attempts_allowed, none.retries_left) == (2, 1, 2, False)
    assert (one.attempt, one.interrupted, one.attempts_allowed, one.retries_left) == (2, 1, 3, True)
