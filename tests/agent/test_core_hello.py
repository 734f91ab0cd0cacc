"""What a Hello says about jobs that ended, against the core's recording fakes."""

from __future__ import annotations

from pathlib import Path

from jobvisor.protocol import HelloAck, LogChunk, StatusUpdate
from jobvisor.states import JobState
from tests.agent.test_core import env, run  # noqa: F401  (the fixture and the RunJob maker)


def test_an_end_sent_on_a_link_that_dropped_is_sent_again_after_the_whole_log(env):  # noqa: F811
    """The soak's finding: a job that ended just before the supervisor was SIGKILLed kept a
    short log there. Its end had been queued with the last log bytes, and both were lost with
    the link; the hello then announced the end, and the supervisor took it as final. The hello
    announces such a job as running, the log goes again from the supervisor's offset, then the end."""
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
    assert announced.state is JobState.RUNNING and announced.exit_code is None
    core.handle(HelloAck(log_offsets={"j1": 4}, forget=[]))
    sent = [m for m in comm.sent if isinstance(m, (LogChunk, StatusUpdate))]
    assert [(m.offset, m.data) for m in sent if isinstance(m, LogChunk)] == [(4, b"456789")]
    assert isinstance(sent[-1], StatusUpdate) and sent[-1].report.state is JobState.COMPLETED


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
