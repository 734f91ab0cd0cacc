"""The workflow engine against the supervisor core with a recording fake agent (no sockets):
the compact graph, releases in the same commit as the dependency's end, on_failure, cancel,
the configuration checks of a document, and the restart's rebuild of a running workflow."""

from __future__ import annotations

import dataclasses

import pytest
from sqlalchemy import select, update

from jobvisor.errors import Conflict, InvalidRequest, NotFound
from jobvisor.protocol.agent_wire import InputFile, IoRequest, OpReply, RunJob
from jobvisor.protocol.common import Caller
from jobvisor.states import JobState, WorkflowState
from jobvisor.workflow_doc import parse_workflow
from supervisor import tables
from supervisor.compute_job import WorkflowMember
from supervisor.workflow_graph import RunGraph
from tests.supervisor.fakes import FakeDriver, eventually, report

ALICE = Caller("alice")


def job(name: str, *after: str, **more) -> dict:
    return {"name": name, "code": "shell", "params": {"argv": ["true"]}, "driver": "fake", "after": list(after), **more}


def doc(*jobs: dict, name: str = "wf", **more) -> dict:
    return {"name": name, "jobs": list(jobs), **more}


async def start(core, document: dict) -> dict:
    return await core.workflow_commands.publish(ALICE, document, "", True)


def jobs_of(core, workflow_id: str) -> dict:
    run = core.workflow_runs.runs[workflow_id]
    return {name: core.jobs.get(run.graph.job_ids[i]) for i, name in enumerate(run.graph.names)}


def agent_of(core, job):
    return core.agents.by_id[job.agent_id]


async def finish(core, job, state: str = "completed", **kw) -> None:
    """The fake agent runs `job` to `state` (once it was sent)."""
    await eventually(lambda: job.agent_id is not None and job.state is JobState.STARTING, what=f"{job.name} sent")
    core.on_agent_messages(agent_of(core, job), [report(job.id, state, exit_code=0 if state == "completed" else 1, **kw)])


# ---------------------------------------------------------------------------- the graph


def test_graph_edges_states_and_shared_reasons():
    parsed = parse_workflow(doc(job("a"), job("b", "a"), job("c", "a"), job("d", "b", "c"), job("e")), max_jobs=10)
    graph = RunGraph(parsed)
    idx = graph.index
    assert list(graph.deps_of(idx["d"])) == [idx["b"], idx["c"]]
    assert sorted(graph.dependents_of(idx["a"])) == [idx["b"], idx["c"]]
    assert [graph.is_root(idx[n]) for n in "abcde"] == [True, False, False, False, True]
    cache: dict = {}
    assert graph.waiting_reason(idx["b"], cache) == "waiting for a"
    assert graph.waiting_reason(idx["c"], cache) is graph.waiting_reason(idx["b"], cache)  # one string for both
    assert graph.waiting_reason(idx["d"], cache) == "waiting for b, c"
    graph.set_state(idx["a"], JobState.COMPLETED)
    assert graph.ready(idx["b"]) and graph.ready(idx["c"]) and not graph.ready(idx["d"])
    graph.set_state(idx["b"], JobState.FAILED)
    assert graph.failed_dependency(idx["d"]) == idx["b"]
    assert list(graph.waiting_dependents(idx["b"])) == [idx["d"]]
    assert graph.counts_by_state() == {"waiting": 3, "completed": 1, "failed": 1} and graph.unfinished == 3


def test_graph_waiting_reason_names_five_and_counts_the_rest():
    jobs = [job(f"p{k}") for k in range(8)] + [job("join", *[f"p{k}" for k in range(8)])]
    graph = RunGraph(parse_workflow(doc(*jobs), max_jobs=10))
    assert graph.waiting_reason(graph.index["join"], {}) == "waiting for p0, p1, p2, p3, p4 and 3 more"


# ---------------------------------------------------------------------------- releases


async def test_release_is_in_the_same_commit_as_the_dependencys_end(core, driver):
    view = await start(core, doc(job("a"), job("b", "a"), job("c", "b")))
    jobs = jobs_of(core, view["id"])
    assert jobs["a"].state is JobState.QUEUED and jobs["b"].state is JobState.WAITING
    assert jobs["b"].reason == "waiting for a" and jobs["c"].reason == "waiting for b"
    assert jobs["b"].member == WorkflowMember(view["id"], "b", 1)
    await core.store.committed()
    await finish(core, jobs["a"])
    # before anything is committed: a's end and b's release sit in the same pending batch
    pending = [(t.job_id, t.state) for t in core.store._batch.transitions]
    assert (jobs["a"].id, JobState.COMPLETED) in pending and (jobs["b"].id, JobState.QUEUED) in pending
    assert jobs["b"].state in (JobState.QUEUED, JobState.STARTING) and jobs["c"].state is JobState.WAITING
    await finish(core, jobs["b"])
    await finish(core, jobs["c"])
    await core.store.committed()
    final = await core.workflow_views.get(ALICE, view["id"])
    assert final["state"] == "completed" and final["counts"] == {"completed": 3}
    assert final["reason"] == "all 3 jobs completed" and view["id"] not in core.workflow_runs.runs
    events = await core.store.read(select(tables.events).where(tables.events.c.kind == "workflow").order_by(tables.events.c.id))
    assert [(e.workflow_id, e.data["state"]) for e in events] == [(view["id"], s) for s in ("draft", "running", "completed")]
    assert events[-1].owner == "alice" and events[-1].data["counts"] == {"completed": 3}
    stored = await core.store.get_job(jobs["b"].id)
    assert stored.member == WorkflowMember(view["id"], "b", 1)


async def test_refs_are_resolved_when_released(core, driver):
    b = {"name": "b", "code": "shell", "driver": "fake", "params": {"argv": ["echo", {"$ref": "a.result.word"}]},
         "env": {"GREETING": "hi"}}
    view = await start(core, doc(job("a"), b))
    jobs = jobs_of(core, view["id"])
    await finish(core, jobs["a"], result={"word": "hello"})
    assert jobs["b"].unpack_spec()[0] == {"argv": ["echo", "hello"]}
    await eventually(lambda: jobs["b"].agent_id is not None, what="b sent")
    link = driver.links[jobs["b"].agent_id]
    assert [(m.params, m.env) for m in link.of(RunJob) if m.job_id == jobs["b"].id] == [
        ({"argv": ["echo", "hello"]}, {"GREETING": "hi"})]  # its other fields kept
    await core.store.committed()
    assert (await core.store.get_job(jobs["b"].id)).unpack_spec()[0] == {"argv": ["echo", "hello"]}  # as stored


async def test_cancel_dependents_cancels_the_transitive_ones_only(core, driver):
    view = await start(core, doc(job("bad"), job("x", "bad"), job("y", "x"), job("ok"), job("z", "ok")))
    jobs = jobs_of(core, view["id"])
    await finish(core, jobs["bad"], "failed")
    for name in ("x", "y"):
        assert jobs[name].state is JobState.CANCELED and jobs[name].reason == "dependency bad failed"
    await finish(core, jobs["ok"])
    await finish(core, jobs["z"])
    await core.store.committed()
    final = await core.workflow_views.status(ALICE, view["id"])
    assert final["state"] == "failed" and final["counts"] == {"failed": 1, "canceled": 2, "completed": 2}


async def test_continue_runs_dependents_of_a_failed_job(core, driver):
    view = await start(core, doc(job("bad"), job("x", "bad"), on_failure="continue"))
    jobs = jobs_of(core, view["id"])
    await finish(core, jobs["bad"], "failed")
    assert jobs["x"].state in (JobState.QUEUED, JobState.STARTING)
    await finish(core, jobs["x"])
    await core.store.committed()
    assert (await core.workflow_views.get(ALICE, view["id"]))["state"] == "failed"


async def test_lost_after_retries_cancels_dependents(core, driver):
    view = await start(core, doc(job("a", max_retries=1), job("b", "a")))
    jobs = jobs_of(core, view["id"])
    await finish(core, jobs["a"], "lost")
    assert jobs["a"].state is JobState.QUEUED and jobs["a"].attempt == 2 and jobs["b"].state is JobState.WAITING
    await eventually(lambda: jobs["a"].state is JobState.STARTING, what="second attempt sent")
    core.on_agent_messages(agent_of(core, jobs["a"]), [report(jobs["a"].id, "lost", attempt=2)])
    assert jobs["b"].state is JobState.CANCELED and jobs["b"].reason == "dependency a was lost"


# ---------------------------------------------------------------------------- the workflow's own life


async def test_cancel_delete_versions_and_conflicts(core, driver):
    view = await start(core, doc(job("a"), job("b", "a")))
    with pytest.raises(Conflict):
        await core.workflow_commands.execute_as(ALICE, view["id"])
    with pytest.raises(Conflict):
        await core.workflow_commands.publish(ALICE, doc(job("a")), "", False)
    with pytest.raises(Conflict):
        await core.workflow_commands.delete(ALICE, view["id"], False)
    with pytest.raises(NotFound):
        await core.workflow_commands.cancel(Caller("bob"), view["id"])
    canceled = await core.workflow_commands.cancel(ALICE, view["id"])
    jobs = jobs_of(core, view["id"]) if view["id"] in core.workflow_runs.runs else None
    assert canceled["state"] in ("running", "canceled")
    if jobs is not None:  # a was sent: it ends when the agent reports
        await finish(core, jobs["a"], "canceled")
    await core.store.committed()
    final = await core.workflow_views.get(ALICE, view["id"])
    assert final["state"] == "canceled" and {j["state"] for j in final["jobs"]} == {"canceled"}
    v2 = await core.workflow_commands.publish(ALICE, doc(job("a")), "smaller", False)
    assert (v2["id"], v2["version"], v2["state"], v2["jobs_total"]) == (view["id"], 2, "draft", 1)
    history = (await core.workflow_views.history(ALICE, view["id"]))["versions"]
    assert [v["version"] for v in history] == [1, 2] and history[1]["message"] == "smaller"
    assert (await core.workflow_commands.delete(ALICE, view["id"], False)) == {"id": view["id"], "deleted": True}
    with pytest.raises(NotFound):
        await core.workflow_views.get(ALICE, view["id"])


async def test_timers_entry_point_executes_as_the_owner(core, driver):
    view = await core.workflow_commands.publish(ALICE, doc(job("a")), "", False)
    with pytest.raises(NotFound):
        await core.workflow_commands.execute("bob", view["id"], "timer")
    running = await core.workflow_commands.execute("alice", view["id"], "timer t1 fired")
    assert running["state"] == "running" and running["reason"] == "timer t1 fired" and running["run"] == 1


async def test_configuration_checks_name_the_job(core, driver):
    with pytest.raises(InvalidRequest) as info:
        await core.workflow_commands.publish(ALICE, doc(job("a"), job("b", "a", driver="no-such-driver")), "", False)
    assert info.value.field == "jobs[1].driver"
    with pytest.raises(InvalidRequest) as info:
        await core.workflow_commands.publish(ALICE, doc(job("a"), job("b", "a", resources={"cpus": 64})), "", False)
    assert info.value.field == "jobs[1].resources.cpus"
    with pytest.raises(InvalidRequest) as info:
        await core.workflow_commands.publish(ALICE, doc(job("a"), job("b", "a", workdir="/not/allowed")), "", False)
    assert info.value.field == "jobs[1].workdir"
    core.workflow_docs.cfg = dataclasses.replace(core.workflow_docs.cfg, max_transfer=0)
    across = doc(job("a", outputs=["f"]), job("b", driver="local", inputs=[{"job": "a", "path": "f"}]))
    with pytest.raises(InvalidRequest) as info:
        await core.workflow_commands.publish(ALICE, across, "", False)
    assert info.value.field == "jobs[1].inputs[0]" and "max_transfer" in info.value.detail


# ---------------------------------------------------------------------------- restart


async def test_restore_releases_behind_a_completed_dependency_once(core, driver):
    """What a restart finds when a dependency's end was committed without its workflow's book
    (it ended while the run was not rebuilt yet): restore releases the dependent, once."""
    view = await start(core, doc(job("a"), job("b", "a"), job("c", "b")))
    jobs = jobs_of(core, view["id"])
    core.workflow_runs.runs.clear()  # the book is gone, as after a crash
    await finish(core, jobs["a"])
    await core.store.committed()
    assert jobs["b"].state is JobState.WAITING
    await core.workflow_restore.restore()
    assert jobs["b"].state in (JobState.QUEUED, JobState.STARTING) and jobs["c"].state is JobState.WAITING
    await core.store.committed()
    core.workflow_runs.runs.clear()
    await core.workflow_restore.restore()  # again: b is queued now, never released twice
    history = [t for t in await core.store.transitions_of(jobs["b"].id) if t["state"] == "queued"]
    assert len(history) == 1
    await finish(core, jobs["b"])
    await finish(core, jobs["c"])
    await core.store.committed()
    assert (await core.workflow_views.get(ALICE, view["id"]))["state"] == "completed"


async def test_restore_cancels_behind_a_failed_dependency_and_ends_the_workflow(core, driver):
    view = await start(core, doc(job("a"), job("b", "a"), job("c", "b")))
    jobs = jobs_of(core, view["id"])
    core.workflow_runs.runs.clear()
    await finish(core, jobs["a"], "failed")
    await core.store.committed()
    await core.workflow_restore.restore()
    assert jobs["b"].reason == jobs["c"].reason == "dependency a failed"
    await core.store.committed()
    final = await core.workflow_views.get(ALICE, view["id"])
    assert final["state"] == WorkflowState.FAILED.value and final["counts"] == {"failed": 1, "canceled": 2}


# ---------------------------------------------------------------------------- files between jobs


async def test_an_input_on_the_same_target_is_the_producers_file_by_path(core, driver):
    a = job("a", outputs=["mesh.h5"])
    b = job("b", inputs=[{"job": "a", "path": "mesh.h5", "dest": "in/mesh.h5"}])
    view = await start(core, doc(a, b))
    jobs = jobs_of(core, view["id"])
    await finish(core, jobs["a"])
    await eventually(lambda: jobs["b"].agent_id is not None, what="b sent")
    (run,) = [m for m in driver.links[jobs["b"].agent_id].of(RunJob) if m.job_id == jobs["b"].id]
    assert run.inputs == [InputFile(path="in/mesh.h5", source=f"/runs/alice/{jobs['a'].id}/mesh.h5")]


class OtherFakeDriver(FakeDriver):
    kind = "fake2"


async def test_an_input_across_targets_goes_through_the_supervisor_up_to_max_transfer(core, driver):
    other = core.targets.drivers["fake2"] = OtherFakeDriver(core.config, core, cpus=1)
    a = job("a", outputs=["small", "big"])
    b = job("b", driver="fake2", inputs=[{"job": "a", "path": "small"}])
    c = job("c", driver="fake2", inputs=[{"job": "a", "path": "big"}])
    core.workflow_runs.inputs.max_transfer = 10
    view = await start(core, doc(a, b, c))
    jobs = jobs_of(core, view["id"])
    await finish(core, jobs["a"])
    assert jobs["b"].state is JobState.WAITING and jobs["b"].reason.startswith("fetching inputs: small of a")
    link = driver.links[jobs["a"].agent_id]
    await eventually(lambda: len(link.of(IoRequest)) == 2, what="the producer's files read")
    agent = core.agents.by_id[jobs["a"].agent_id]
    for request in link.of(IoRequest):
        data = b"tiny" if request.path == "small" else b"x" * 11
        core.on_agent_messages(agent, [OpReply(request.op_id, True, {"data": data, "offset": 0, "size": len(data)})])
    await eventually(lambda: jobs["b"].agent_id is not None, what="b sent")
    (run,) = [m for m in other.links[jobs["b"].agent_id].of(RunJob) if m.job_id == jobs["b"].id]
    assert run.inputs == [InputFile(path="small", data=b"tiny")]
    await eventually(lambda: jobs["c"].state is JobState.FAILED, what="c failed")
    assert "'big' of a is 11 bytes" in jobs["c"].reason and "max_transfer" in jobs["c"].reason


async def test_restore_of_a_document_that_no_longer_parses_ends_the_run(core, driver):
    view = await start(core, doc(job("a"), job("b", "a")))
    jobs = jobs_of(core, view["id"])
    core.workflow_runs.runs.clear()
    core.store.execute(update(tables.workflow_versions).where(tables.workflow_versions.c.workflow_id == view["id"]),
                       [{"document": b'{"name": "broken"}'}])
    await core.store.committed()
    await core.workflow_restore.restore()
    assert jobs["b"].state is JobState.CANCELED and "cannot be read after a restart" in jobs["b"].reason
    await core.store.committed()
    final = await core.workflow_views.get(ALICE, view["id"])
    assert final["state"] == "failed" and final["reason"].startswith("its document cannot be read")
