"""The races DESIGN.md's await-retry rule exists for, against a recording fake agent."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from jobvisor.errors import OpTimeout
from jobvisor.protocol.agent_wire import CancelJob, ForgetJobs, JobReport, OpReply, RunJob
from jobvisor.protocol.common import Caller
from jobvisor.protocol.job_requests import CancelJobRequest, GetJob, JobSpec, RunAnalysis
from jobvisor.states import JobState
from supervisor.requests import RequestHandlers
from supervisor.core import Supervisor
from tests.supervisor.fakes import FakeDriver, eventually, make_config, report


def spec(**kw) -> JobSpec:
    return JobSpec(code="shell", params={"argv": ["true"]}, driver="fake", **kw)


async def submit_one(core, user="alice", **kw):
    (job,) = await core.submit(user, [spec(**kw)])
    return job


async def running(core, driver, job):
    await eventually(lambda: job.state is JobState.STARTING and (job.agent_id is not None), what="job sent")
    link = driver.links[job.agent_id]
    core.on_agent_messages(core.agents.by_id[job.agent_id], [report(job.id, "running")])
    assert job.state is JobState.RUNNING
    return link


async def test_cancel_while_waiting_for_a_slot(core, driver):
    first = await submit_one(core)
    second = await submit_one(core)
    link = await running(core, driver, first)
    assert second.state is JobState.QUEUED and core.queue_position(second) == 1
    core.cancel(second)
    assert second.state is JobState.CANCELED
    core.on_agent_messages(core.agents.by_id[first.agent_id], [report(first.id, "completed", exit_code=0)])
    await core.store.committed()
    await asyncio.sleep(0.05)
    assert [m.job_id for m in link.of(RunJob)] == [first.id]  # the canceled job never went out
    stored = await core.store.get_job(second.id)
    assert stored.state is JobState.CANCELED and stored.reason == "canceled by user"


async def test_agent_drops_between_acquire_and_send(core, driver):
    driver.connect_automatically = False
    job = await submit_one(core)
    await eventually(lambda: driver.started, what="the agent's start")
    agent_id = driver.started[0].agent_id
    agent = core.agents.by_id[agent_id]
    first = driver.connect(agent_id)  # acquired ...
    core.on_agent_disconnected(agent, agent.link)  # ... and gone before any slot was handed out
    await asyncio.sleep(0.1)
    assert job.state is JobState.QUEUED and not (job.agent_id is not None) and not first.of(RunJob)
    again = driver.connect(agent_id)  # it comes back: the job goes out once, same attempt
    await eventually(lambda: (job.agent_id is not None), what="job sent after reconnect")
    assert job.attempt == 1 and job.state is JobState.STARTING
    assert len(again.of(RunJob)) == 1 and not first.of(RunJob)


async def test_reply_for_a_destroyed_op_is_dropped(core, driver):
    job = await submit_one(core)
    link = await running(core, driver, job)
    handlers = RequestHandlers(core)
    with pytest.raises(OpTimeout):
        await handlers.handle(RunAnalysis(Caller("alice"), job.id, {}))
    from jobvisor.protocol.agent_wire import AnalysisRequest

    (request,) = link.of(AnalysisRequest)
    agent = core.agents.by_id[job.agent_id]
    core.on_agent_messages(agent, [OpReply(request.op_id, True, {"late": True})])
    assert job.state is JobState.RUNNING and not agent.pending_ops


async def test_two_cancels_at_once(core, driver):
    job = await submit_one(core)
    link = await running(core, driver, job)
    handlers = RequestHandlers(core)
    replies = await asyncio.gather(
        handlers.handle(CancelJobRequest(Caller("alice"), job.id)),
        handlers.handle(CancelJobRequest(Caller("alice"), job.id)),
    )
    assert len(link.of(CancelJob)) == 1
    assert all(r["id"] == job.id for r in replies)
    core.on_agent_messages(core.agents.by_id[job.agent_id], [report(job.id, "canceled", reason="canceled by user")])
    await eventually(lambda: link.of(ForgetJobs), what="forget after commit")
    stored = await core.store.get_job(job.id)
    assert stored.state is JobState.CANCELED


async def test_analysis_timeout_leaves_the_run_alone(core, driver):
    job = await submit_one(core)
    link = await running(core, driver, job)
    with pytest.raises(OpTimeout) as info:
        await RequestHandlers(core).handle(RunAnalysis(Caller("alice"), job.id, {}))
    assert "did not answer" in info.value.detail
    assert job.state is JobState.RUNNING and not link.of(CancelJob)
    core.on_agent_messages(core.agents.by_id[job.agent_id], [report(job.id, "completed", exit_code=0)])
    await core.store.committed()
    assert (await core.store.get_job(job.id)).state is JobState.COMPLETED


async def test_another_users_agent_cannot_touch_a_job(core, driver):
    core.targets.queue("fake").cpus_total = 2
    job = await submit_one(core, user="alice")
    await running(core, driver, job)
    other = await submit_one(core, user="mallory")
    await eventually(lambda: other.agent_id is not None, what="mallory's agent")
    mallory = core.agents.by_id[other.agent_id]
    core.on_agent_messages(mallory, [report(job.id, "completed", exit_code=0)])
    assert job.state is JobState.RUNNING


async def test_agent_death_loses_or_retries(core, driver):
    lost = await submit_one(core)
    await running(core, driver, lost)
    agent_id = lost.agent_id
    core.agent_exited(agent_id, "killed")
    assert lost.state is JobState.LOST and "killed" in lost.reason
    retried = await submit_one(core, max_retries=1)
    link = await running(core, driver, retried)
    core.agent_exited(retried.agent_id, "killed again")
    assert retried.state in (JobState.QUEUED, JobState.STARTING) and retried.attempt == 2
    await eventually(lambda: (retried.agent_id is not None) and retried.attempt == 2, what="second attempt sent")
    await core.store.committed()
    history = await core.store.transitions_of(retried.id)
    assert [(h["attempt"], h["state"]) for h in history][:4] == [(1, "queued"), (1, "starting"), (1, "running"), (1, "lost")]
    assert (2, "queued") in [(h["attempt"], h["state"]) for h in history]
    assert link is not driver.links[retried.agent_id]


async def test_events_are_published_after_commit(core, driver):
    queue = core.bus.subscribe()
    job = await submit_one(core)
    events = await asyncio.wait_for(queue.get(), 2)
    assert events[0].job_id == job.id and events[0].data["state"] == "queued"
    assert (await core.store.get_job(job.id)).state is not None  # the row was committed first


def send_ahead(core, depth: int = 32) -> None:
    import dataclasses

    core.cfg = core.dispatch.cfg = dataclasses.replace(core.cfg, prefetch=depth)


def ahead_at(core, agent) -> list:
    """The jobs waiting in `agent`'s FIFO, as the supervisor mirrors it (oldest first)."""
    return [job.id for job in core.queues["fake"].ahead() if job.agent_id == agent.id]


async def test_sent_ahead_jobs_take_freed_slots_in_order(core, driver):
    from jobvisor.protocol.agent_wire import StartPrefetched

    send_ahead(core)
    first = await submit_one(core)
    link = await running(core, driver, first)
    rest = await core.submit("alice", [spec() for _ in range(3)])
    await eventually(lambda: all((j.agent_id is not None) for j in rest), what="jobs sent ahead")
    held = [m for m in link.of(RunJob) if m.prefetched]
    assert [m.job_id for m in held] == [j.id for j in rest]
    agent = core.agents.by_id[first.agent_id]
    assert ahead_at(core, agent) == [j.id for j in rest] and core.queues["fake"].used == 1
    # the agent ends `first` and starts the oldest held job itself, in one frame
    core.on_agent_messages(agent, [report(first.id, "completed", exit_code=0), report(rest[0].id, "running")])
    assert rest[0].run_op is not None and ahead_at(core, agent) == [rest[1].id, rest[2].id]
    assert core.queues["fake"].used == 1
    # cancel a job sent ahead: it ends at once and frees no slot; its agent is told to drop it
    core.cancel(rest[2])
    assert rest[2].state is JobState.CANCELED and CancelJob(rest[2].id, "canceled by user") in link.of(CancelJob)
    core.on_agent_messages(agent, [report(rest[2].id, "canceled", reason="canceled by user")])
    assert ahead_at(core, agent) == [rest[1].id] and core.queues["fake"].used == 1
    assert not link.of(StartPrefetched)
    # the running job ends with nothing held behind it at the agent yet: the freed slot goes
    # to the held job by StartPrefetched, so a held job never waits for an end that already passed
    core.on_agent_messages(agent, [report(rest[0].id, "completed", exit_code=0)])
    await eventually(lambda: link.of(StartPrefetched), what="StartPrefetched")
    assert [m.job_id for m in link.of(StartPrefetched)] == [rest[1].id] and rest[1].run_op is not None
    assert core.queues["fake"].used == 1


async def test_a_second_user_stops_sending_ahead(core, driver):
    send_ahead(core)
    first = await submit_one(core, user="alice")
    await running(core, driver, first)
    await core.submit("bob", [spec()])
    more = await core.submit("alice", [spec() for _ in range(3)])
    await asyncio.sleep(0.1)
    assert not any((j.agent_id is not None) for j in more), "with bob waiting, alice's jobs must wait in the fair queue"


async def test_a_start_folded_into_its_end_is_recorded_before_it(core, driver):
    """The agent's outbox sends a job's start and end queued for the same frame as the end
    alone, with `started_at`: the supervisor records the start first, with its time."""
    send_ahead(core)
    first = await submit_one(core)
    link = await running(core, driver, first)
    rest = await core.submit("alice", [spec() for _ in range(2)])
    await eventually(lambda: all((j.agent_id is not None) for j in rest), what="jobs sent ahead")
    assert [m.job_id for m in link.of(RunJob) if m.prefetched] == [j.id for j in rest]
    agent = core.agents.by_id[first.agent_id]
    # one frame: `first` ends, rest[0] takes its slot and ends too, rest[1] takes the slot
    core.on_agent_messages(agent, [
        report(first.id, "completed", exit_code=0),
        report(rest[0].id, "completed", exit_code=0, at=124.0, started_at=123.0),
        report(rest[1].id, "running"),
    ])
    assert rest[0].state is JobState.COMPLETED and rest[0].started_at == 123.0
    assert ahead_at(core, agent) == [] and core.queues["fake"].used == 1
    await core.store.committed()
    transitions = await core.store.transitions_of(rest[0].id)
    assert [(t["state"], t["at"]) for t in transitions[2:]] == [("running", 123.0), ("completed", 124.0)]
    assert [t["state"] for t in transitions[:2]] == ["queued", "starting"]


async def test_jobs_sent_ahead_are_queued_with_their_positions(core, driver):
    """Sending ahead is the scheduler's business: to users such a job is `queued`, with its
    place in line, and it counts in the queue (it was `starting`, and hidden from both)."""
    send_ahead(core)
    first = await submit_one(core)
    await running(core, driver, first)
    rest = await core.submit("alice", [spec() for _ in range(3)])
    await eventually(lambda: all(j.agent_id is not None for j in rest), what="jobs sent ahead")
    later = await submit_one(core)
    assert [j.state for j in rest] == [JobState.QUEUED] * 3
    assert [core.queue_position(j) for j in [*rest, later]] == [1, 2, 3, 4]
    views = [RequestHandlers(core)._view(j) for j in rest]
    assert [(v["state"], v["queue_position"], v["agent_id"]) for v in views] == [("queued", n, None) for n in (1, 2, 3)]
    from jobvisor.protocol.system_requests import GetQueue

    queue = await RequestHandlers(core).handle(GetQueue(Caller("alice")))
    assert queue["drivers"]["fake"]["queued"] == 4
    assert [(j["id"], j["queue_position"]) for j in queue["jobs"]] == [(j.id, n) for n, j in enumerate([*rest, later], 1)]
    await core.store.committed()
    stored = await core.store.get_job(rest[0].id)
    assert stored.state is JobState.QUEUED and stored.agent_id == first.agent_id  # a restart knows where it may be


async def test_a_run_lost_on_the_way_is_sent_again_and_a_restarted_agents_job_is_lost(core, driver):
    """The same agent process names every job it was sent until told to forget it: one it does
    not name never reached it, and goes out again (same attempt). A process restarted under
    the agent's id may have run it: that attempt is `lost`."""
    job = await submit_one(core)
    await eventually(lambda: job.state is JobState.STARTING and (job.agent_id is not None), what="job sent")
    agent = core.agents.by_id[job.agent_id]
    core.on_agent_disconnected(agent, agent.link)  # the RunJob died with the link
    again = driver.connect(agent.id, jobs=[])
    await eventually(lambda: (job.agent_id is not None) and again.of(RunJob), what="the run sent again")
    assert job.attempt == 1 and job.state is JobState.STARTING
    await core.store.committed()
    history = [(t["state"], t["reason"]) for t in await core.store.transitions_of(job.id)]
    assert ("queued", f"agent {agent.id} reconnected without it: the run never reached it") in history

    core.on_agent_disconnected(agent, agent.link)
    driver.connect(agent.id, jobs=[], pid=4343)
    assert job.state is JobState.LOST and job.reason == f"agent {agent.id} reconnected without it"


async def test_a_retried_jobs_log_is_the_new_attempts_alone(core, driver):
    """The soak's finding: attempt 2's bytes were written over attempt 1's longer log, whose
    tail stayed. A new attempt's log starts empty; a late chunk of the old attempt is dropped."""
    from jobvisor.protocol.agent_wire import LogChunk

    job = await submit_one(core, max_retries=1)
    await running(core, driver, job)
    first_agent = core.agents.by_id[job.agent_id]
    core.on_agent_messages(first_agent, [LogChunk(job.id, 1, 0, b"attempt 1 said a lot\n" * 5)])
    await core.store.log_writer.written()
    core.agent_exited(first_agent.id, "killed")
    assert job.attempt == 2
    await eventually(lambda: job.state is JobState.STARTING and job.agent_id not in (None, first_agent.id), what="attempt 2 sent")
    second = core.agents.by_id[job.agent_id]
    core.on_agent_messages(second, [report(job.id, "running", attempt=2), LogChunk(job.id, 2, 0, b"two\n"),
                                    LogChunk(job.id, 2, -1, b"bad offset")])
    core.on_agent_messages(first_agent, [LogChunk(job.id, 1, 105, b"late")])
    await core.store.log_writer.written()
    assert core.logs.read(job.id, 0, 1000) == (b"two\n", 4)


async def test_a_code_name_longer_than_its_column_is_refused_naming_the_field(core, driver):
    """PostgreSQL refuses a value longer than its column (a 503 for the whole batch); SQLite
    would keep it. The supervisor answers a 400 naming the field, on either."""
    from jobvisor.errors import InvalidRequest

    with pytest.raises(InvalidRequest) as info:
        await core.submit("alice", [spec(), JobSpec(code="x" * 129, params={}, driver="fake")])
    assert info.value.field == "jobs[1].code" and "128" in info.value.detail


async def test_values_msgpack_cannot_carry_are_refused_by_the_supervisor_too(core, driver):
    """The gateway refuses them first; a request that reaches the supervisor another way gets
    the same 400 naming the field, not a 500 from packing the spec, and the run goes on."""
    from jobvisor.errors import InvalidRequest

    with pytest.raises(InvalidRequest) as info:
        await core.submit("alice", [JobSpec(code="python", params={"entry": "m:f", "args": {"x": 2**70}}, driver="fake")])
    assert info.value.field == "params.args.x"
    job = await submit_one(core)
    await running(core, driver, job)
    with pytest.raises(InvalidRequest) as info:
        await RequestHandlers(core).handle(RunAnalysis(Caller("alice"), job.id, {"x": -(2**70)}))
    assert info.value.field == "args.x" and job.state is JobState.RUNNING


async def test_each_hold_has_its_own_release(core, driver):
    """One word per reason a job waits: the end of the restart grace releases the restart
    hold only. A job held for its user's login waits for that login (it was released by the
    grace too, and started an agent that could not log in)."""
    from supervisor.holds import HoldKind

    driver.login_required = lambda user: "login required: run `jobvisor login fake`"
    job = await submit_one(core)
    await eventually(lambda: core.holds.get(HoldKind.LOGIN, "alice", "fake") is not None, what="the login hold")
    assert job.state is JobState.QUEUED and job.reason.startswith("login required")
    core.holds.add(HoldKind.RESTART, "bob", "fake", [])
    core.recovery.cfg = dataclasses.replace(core.recovery.cfg, reconnect_grace=0.01)
    await core.recovery.after_grace()
    assert core.holds.get(HoldKind.RESTART, "bob", "fake") is None
    assert core.holds.get(HoldKind.LOGIN, "alice", "fake") is not None and not driver.started
    driver.login_required = lambda user: None
    core.release_held("alice", "fake")
    await eventually(lambda: job.state is JobState.STARTING, what="the job sent after the login")


async def test_a_job_slotted_then_found_waiting_in_the_agents_queue_is_queued_again(core, driver):
    """The review's case A: a job sent ahead gets its slot (StartPrefetched goes out), the link
    drops, and the same agent process says the job still waits in its FIFO. It is `queued`
    again, first in line, without a slot; the next slot and its start work as for any job sent
    ahead (the scheduling loop died on starting -> starting)."""
    send_ahead(core, depth=4)
    first = await submit_one(core)
    link = await running(core, driver, first)
    ahead, behind = await core.submit("alice", [spec(), spec()])
    await eventually(lambda: ahead.agent_id is not None and behind.agent_id is not None, what="sent ahead")
    core.targets.queue("fake").cpus_total = 2
    core.dispatch.wake()
    await eventually(lambda: ahead.state is JobState.STARTING, what="the free slot given to the job sent ahead")
    agent = core.agents.by_id[first.agent_id]
    core.on_agent_disconnected(agent, link)
    link = driver.connect(agent.id, [JobReport(first.id, 1, JobState.RUNNING),
                                     JobReport(ahead.id, 1, JobState.STARTING, prefetched=True),
                                     JobReport(behind.id, 1, JobState.STARTING, prefetched=True)])
    assert ahead.state is JobState.QUEUED and ahead.run_op is None and core.queue_position(ahead) is not None
    await eventually(lambda: ahead.state is JobState.STARTING, what="its slot again")
    core.on_agent_messages(agent, [report(ahead.id, "running")])
    assert ahead.state is JobState.RUNNING and not core._loops[0].done()


async def test_a_job_being_canceled_that_never_reached_its_agent_is_canceled_not_sent_again(core, driver):
    """The review's case B: the cancel was waiting for the agent, which comes back (the same
    process) without the job; it used to go back to the queue, cancel and all, and run."""
    job = await submit_one(core)
    await eventually(lambda: job.state is JobState.STARTING, what="sent")
    agent = core.agents.by_id[job.agent_id]
    core.cancel(job)
    core.on_agent_disconnected(agent, agent.link)
    again = driver.connect(agent.id, [])
    assert job.state is JobState.CANCELED
    await asyncio.sleep(0.1)
    assert not again.of(RunJob)


async def test_the_agent_forgets_a_canceled_job_sent_ahead(core, driver):
    """The review's case C: such a job ends here at once; the agent's `canceled` for it used to
    find it ended and was dropped without the ForgetJobs, so the agent kept it."""
    send_ahead(core, depth=4)
    first = await submit_one(core)
    link = await running(core, driver, first)
    (ahead,) = await core.submit("alice", [spec()])
    await eventually(lambda: ahead.agent_id is not None, what="sent ahead")
    core.cancel(ahead)
    core.on_agent_messages(core.agents.by_id[first.agent_id], [report(ahead.id, "canceled", reason="canceled by user")])
    await eventually(lambda: any(ahead.id in m.job_ids for m in link.of(ForgetJobs)), what="ForgetJobs")


async def test_a_job_sent_ahead_that_another_process_under_the_agents_id_does_not_name_may_have_run(core, driver):
    """The review's case D: only the very process it was sent to can say it never got it."""
    send_ahead(core, depth=4)
    first = await submit_one(core)
    link = await running(core, driver, first)
    (ahead,) = await core.submit("alice", [spec()])
    await eventually(lambda: ahead.agent_id is not None, what="sent ahead")
    agent = core.agents.by_id[first.agent_id]
    core.on_agent_disconnected(agent, link)
    driver.connect(agent.id, [], pid=999)
    assert ahead.state is JobState.LOST and first.state is JobState.LOST


async def test_an_end_comes_before_its_log_and_the_job_is_forgotten_once_the_log_is_whole(core, driver):
    """The end carries the final log size; the bytes after it are taken, a read waits for
    them, and ForgetJobs goes only once the log store holds them all. An end sent again with
    less (the agent could not read the rest) lowers what is waited for."""
    from jobvisor.protocol.agent_wire import LogChunk
    from jobvisor.protocol.job_requests import ReadLog

    job = await submit_one(core)
    link = await running(core, driver, job)
    agent = core.agents.by_id[job.agent_id]
    core.on_agent_messages(agent, [LogChunk(job.id, 1, 0, b"first\n"), report(job.id, "completed", log_size=12, exit_code=0)])
    await core.store.committed()
    assert job.state is JobState.COMPLETED and core.tails.pending(job.id) is not None
    handlers = RequestHandlers(core)
    read = asyncio.ensure_future(handlers.read_log(ReadLog(Caller("alice"), job.id, offset=6)))
    await asyncio.sleep(0.1)
    assert not read.done()  # the rest of the log is on its way: the read waits for it
    core.on_agent_messages(agent, [LogChunk(job.id, 1, 6, b"second")])
    reply = await asyncio.wait_for(read, 10)
    assert reply["data"] == b"second" and reply["size"] == 12 and reply["final"]
    await eventually(lambda: any(job.id in m.job_ids for m in link.of(ForgetJobs)), what="the job forgotten")
    assert core.logs.read(job.id, 0, 100) == (b"first\nsecond", 12)

    other = await submit_one(core)
    await running(core, driver, other)
    agent = core.agents.by_id[other.agent_id]
    core.on_agent_messages(agent, [report(other.id, "completed", log_size=100, exit_code=0)])
    assert core.tails.pending(other.id).final_size == 100
    core.on_agent_messages(agent, [report(other.id, "completed", log_size=0, exit_code=0)])
    assert core.tails.pending(other.id) is None


async def test_an_agent_that_dies_after_it_ran_fails_no_queued_job_a_new_one_starts(core, driver):
    first = await submit_one(core)
    await running(core, driver, first)
    agent = core.agents.by_id[first.agent_id]
    core.on_agent_disconnected(agent, agent.link)  # dropped: it may come back within the grace
    driver.connect_automatically = False
    waiting = await submit_one(core)  # the user's next job waits for that agent
    await asyncio.sleep(0.05)
    core.agent_exited(agent.id, "agent process exited with code -9")  # it never will
    await eventually(lambda: len(driver.started) == 2, what="a new agent's start")
    assert waiting.state is JobState.QUEUED, waiting.reason  # the dead agent's end is not this job's
    assert first.state is JobState.LOST
    driver.connect(driver.started[1].agent_id)
    await eventually(lambda: waiting.agent_id == driver.started[1].agent_id, what="the job sent to the new agent")


@pytest.fixture
async def batched(tmp_path):
    """A supervisor whose every write waits for the writer's batch, as on PostgreSQL (SQLite
    commits a small one inline)."""
    sup = Supervisor(make_config(tmp_path).replace("database", inline_rows=0))
    sup.targets.drivers["fake"] = FakeDriver(sup.config, sup, cpus=1)
    await sup.start()
    yield sup
    await sup.shutdown()


async def test_a_job_view_is_durable_and_its_history_reaches_it_when_the_job_moves_during_the_read(batched):
    core, driver = batched, batched.targets.drivers["fake"]
    job = await submit_one(core)
    await running(core, driver, job)
    await core.store.committed()
    agent = core.agents.by_id[job.agent_id]
    plain = core.store.committed
    calls = []

    def committed_then_the_end_arrives():
        calls.append(1)
        waited = plain()
        if len(calls) > 1:
            return waited

        async def then_report():
            await waited
            core.on_agent_messages(agent, [report(job.id, "completed", exit_code=0)])  # not committed yet

        return asyncio.ensure_future(then_report())

    core.store.committed = committed_then_the_end_arrives
    try:
        view = await RequestHandlers(core).get_job(GetJob(Caller("alice"), job.id))
    finally:
        core.store.committed = plain
    assert view["state"] == "completed"
    assert [h["state"] for h in view["history"]] == ["queued", "starting", "running", "completed"]
