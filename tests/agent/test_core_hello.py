"""What a Hello says about jobs that ended, against the core's recording fakes."""

from __future__ import annotations

import os
from pathlib import Path

from jobvisor.protocol.agent_wire import ForgetJobs, HelloAck, LogChunk, StatusUpdate
from jobvisor.states import JobState
from tests.agent.test_core import env, run  # noqa: F401  (the fixture and the RunJob maker)


def test_an_end_sent_on_a_link_that_dropped_is_announced_and_its_log_goes_on(env):  # noqa: F811
    """The soak's finding: a job that ended just before the supervisor was SIGKILLed kept a
    short log there. Its end had been queued with the last log bytes, and both were lost with
    the link. The hello announces the end with the final log size, and the log goes again from
    the offset the supervisor's HelloAck gives (which takes log bytes after an end)."""
    core, comm, procs, tmp = env
    core.handle(run("j1", tmp))
    job = core.jobs["j1"]
    job.run_dir.mkdir(parents=True, exist_ok=True)
    Path(job.log_path).write_bytes(b"0123456789")
    procs.log_size = lambda job: 10
    core.backend.on_exit(job, 0)
    core.poll()
    assert ("j1", "completed", "") in comm.reports()  # queued to the outbox: the link then drops
    comm.sent.clear()
    (announced,) = core.hello_reports()
    assert announced.state is JobState.COMPLETED and announced.exit_code == 0 and announced.log_size == 10
    core.handle(HelloAck(log_offsets={"j1": 4}, forget=[]))
    sent = [m for m in comm.sent if isinstance(m, (LogChunk, StatusUpdate))]
    assert [(m.offset, m.data) for m in sent] == [(4, b"456789")]  # the end went with the hello
    core.handle(ForgetJobs(["j1"]))
    assert "j1" not in core.jobs


def test_an_end_without_output_is_announced_as_it_is(env):  # noqa: F811
    core, comm, procs, tmp = env
    core.handle(run("j1", tmp))
    core.backend.on_exit(core.jobs["j1"], 3)
    core.poll()
    (announced,) = core.hello_reports()
    assert announced.state is JobState.FAILED and announced.exit_code == 3


def test_a_result_the_wire_cannot_carry_is_dropped_with_the_reason(env):  # noqa: F811
    """A python job returning {"big": 2**70}: its report, and the hello after a reconnect,
    could never be packed, so the agent lost its link again and again and all its jobs ended
    lost. The job completes without the result, and says why."""
    core, comm, procs, tmp = env
    core.handle(run("j1", tmp))
    run_dir = tmp / "j1"
    (run_dir / ".jobvisor").mkdir()
    (run_dir / ".jobvisor" / "result.json").write_text('{"big": %d}' % 2**70)
    core.backend.on_exit(core.jobs["j1"], 0)
    final = [m.report for m in comm.sent if isinstance(m, StatusUpdate)][-1]
    assert final.state is JobState.COMPLETED and final.result is None
    assert final.reason.startswith("the result cannot be sent: result.big:")
    (announced,) = core.hello_reports()
    assert announced.result is None


def _ended_with_output(env, size: int):  # noqa: F811
    core, comm, procs, tmp = env
    core.handle(run("j1", tmp))
    job = core.jobs["j1"]
    job.run_dir.mkdir(parents=True, exist_ok=True)
    Path(job.log_path).write_bytes(b"y" * size)
    procs.log_size = lambda job: size
    return core, comm, job


def test_an_end_is_reported_at_once_when_its_log_cannot_go_yet(env):  # noqa: F811
    """The link is congested at the end: the end goes now, with the final size, and the log
    follows it once the link takes bytes again."""
    core, comm, job = _ended_with_output(env, 1000)
    comm.log_ready = lambda: False
    core.backend.on_exit(job, 0)
    assert [(m.report.state, m.report.log_size) for m in comm.sent if isinstance(m, StatusUpdate)][-1] == \
        (JobState.COMPLETED, 1000)
    assert not any(isinstance(m, LogChunk) for m in comm.sent) and core.log_backlog
    comm.log_ready = lambda: True
    core.ship_backlog()  # what the link calls once it has room
    chunks = [m for m in comm.sent if isinstance(m, LogChunk)]
    assert [(m.offset, len(m.data)) for m in chunks] == [(0, 1000)]
    assert [m for m in comm.sent if isinstance(m, StatusUpdate)][-1].report.state is JobState.COMPLETED
    assert job.log_fd is None  # all sent: the log is closed


def test_a_job_forgotten_before_its_log_is_sent_is_dropped_after_it(env):  # noqa: F811
    core, comm, job = _ended_with_output(env, 1000)
    comm.log_ready = lambda: False
    core.backend.on_exit(job, 0)
    core.handle(ForgetJobs(["j1"]))  # the end is committed; the log is still to come
    assert "j1" in core.jobs
    comm.log_ready = lambda: True
    core.poll()
    assert [(m.offset, len(m.data)) for m in comm.sent if isinstance(m, LogChunk)] == [(0, 1000)]
    assert "j1" not in core.jobs


def test_a_short_jobs_output_goes_before_its_end(env):  # noqa: F811
    core, comm, job = _ended_with_output(env, 10)
    core.backend.on_exit(job, 0)
    kinds = [type(m).__name__ for m in comm.sent if isinstance(m, (LogChunk, StatusUpdate))]
    assert kinds[-2:] == ["LogChunk", "StatusUpdate"]


def test_a_jobs_own_words_replace_its_bare_exit_code(env):  # noqa: F811
    """A python job leaves its exception in .jobvisor/error.json (job_cmd.pyrun): that is its
    reason, on the local backend and behind a Slurm suffix alike; a job that left nothing
    keeps its exit code."""
    core, comm, procs, tmp = env
    for job_id, words in (("told", '{"reason": "ValueError: bad mesh size"}'), ("slurm", '{"reason": "KeyError: \'x\'"}'),
                          ("silent", None)):
        core.handle(run(job_id, tmp))
        if words is not None:
            (tmp / job_id / ".jobvisor").mkdir()
            (tmp / job_id / ".jobvisor" / "error.json").write_text(words)
    core.backend.on_exit(core.jobs["told"], 1)
    core.conclude(core.jobs["slurm"], JobState.FAILED, "exit code 1 (Slurm job 9: FAILED)", 1)
    core.backend.on_exit(core.jobs["silent"], 4)
    reasons = {job_id: reason for job_id, state, reason in comm.reports() if state is JobState.FAILED}
    assert reasons == {"told": "ValueError: bad mesh size", "slurm": "KeyError: 'x' (Slurm job 9: FAILED)",
                       "silent": "exit code 4"}


def test_a_log_that_cannot_be_read_after_the_end_is_reported_short(env):  # noqa: F811
    """The end said 1000 bytes would follow; the log then cannot be read: the end goes again
    with what was sent, so the supervisor stops waiting for the rest."""
    core, comm, job = _ended_with_output(env, 1000)
    comm.log_ready = lambda: False
    core.backend.on_exit(job, 0)
    os.remove(job.log_path)
    comm.log_ready = lambda: True
    core.poll()
    ends = [m.report for m in comm.sent if isinstance(m, StatusUpdate) and m.report.state is JobState.COMPLETED]
    assert [e.log_size for e in ends] == [1000, 0]
    assert not job.log_pending
