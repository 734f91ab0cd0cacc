"""The agent's synchronous core with its local backend, against recording fakes: no sockets,
no processes."""

import dataclasses
import signal
from pathlib import Path

import pytest

from jobvisor.config import AgentConfig
from jobvisor.protocol.agent_wire import (
    Ack, CancelJob, ForgetJobs, HelloAck, KillAgent, LogChunk, OpReply, Progress, RunJob, StatusRequest, StatusUpdate,
)
from jobvisor.states import JobState

from agent.core import AgentCore
from agent.jobs import Spawning, exit_outcome
from jobvisor.reasons import describe_end, walltime_exceeded
from agent.local import STATUS_FILE_DELAY, LocalBackend


class FakeHandle:
    def __init__(self, delay, callback):
        self.delay, self.callback, self.cancelled = delay, callback, False

    def cancel(self):
        self.cancelled = True

    def fire(self):
        assert not self.cancelled
        self.callback()


class FakeChild:
    def __init__(self, pid):
        self.pid = pid


class FakeProcesses:
    def __init__(self):
        self.spawned, self.signals, self.timers, self.statuses, self.ahead = [], [], [], [], []
        self.fail_spawn: OSError | None = None
        self.defer_spawn = False
        self.pending = []

    def prepare_ahead(self, run_dir: Path):
        self.ahead.append(run_dir)
        return run_dir

    def prepare_run_dir(self, run_dir: Path, ahead=None):
        assert ahead in (None, run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)

    def spawn(self, job, launch, env, done):
        if self.fail_spawn:
            raise self.fail_spawn
        self.spawned.append((job.job_id, launch.argv, env))
        if self.defer_spawn:  # like the real runner: the fork/exec finishes later
            self.pending.append((job, done))
            return
        done(FakeChild(1000 + len(self.spawned)))

    def finish_spawn(self, error=None):
        job, done = self.pending.pop(0)
        done(error or FakeChild(1000 + len(self.spawned)))

    def signal_group(self, job, sig):
        self.signals.append((job.job_id, sig))

    def call_later(self, delay, callback):
        handle = FakeHandle(delay, callback)
        self.timers.append(handle)
        return handle

    def write_status(self, job):
        self.statuses.append((job.job_id, str(job.state)))

    def log_size(self, job):
        return 0


class FakeComm:
    def __init__(self):
        self.sent, self.ops, self.stops = [], [], []
        self.ready = True

    def send(self, message):
        self.sent.append(message)

    def linked(self):
        return self.ready

    def log_ready(self):
        return self.ready

    def run_op(self, op_id, make_reply):
        self.ops.append(op_id)

    def stop(self, reason, cancel_jobs):
        self.stops.append((reason, cancel_jobs))

    def reports(self, job_id=None):
        return [(m.report.job_id, m.report.state, m.report.reason) for m in self.sent
                if isinstance(m, StatusUpdate) and (job_id is None or m.report.job_id == job_id)]


@pytest.fixture
def env(tmp_path):
    comm, procs = FakeComm(), FakeProcesses()
    core = AgentCore("a1", AgentConfig(), comm, LocalBackend(procs, cancel_grace=2.0))
    return core, comm, procs, tmp_path


def run(job_id, tmp_path, params=None, resources=None, attempt=1, code="shell"):
    return RunJob(job_id, attempt, code, params or {"argv": ["sleep", "9"]}, resources or {}, str(tmp_path / job_id))


def test_exit_outcome_rules():
    assert exit_outcome(0, None) == (JobState.COMPLETED, "")
    assert exit_outcome(2, None) == (JobState.FAILED, "exit code 2")
    assert exit_outcome(-9, None) == (JobState.FAILED, "killed by SIGKILL")
    assert exit_outcome(-99, None) == (JobState.FAILED, "killed by signal 99")
    assert exit_outcome(-15, (JobState.CANCELED, "by user")) == (JobState.CANCELED, "by user")
    assert exit_outcome(0, (JobState.TIMED_OUT, "late")) == (JobState.TIMED_OUT, "late")
    assert walltime_exceeded(3725) == "walltime 01:02:05 exceeded"


def test_an_end_is_described_without_saying_a_thing_twice():
    assert describe_end("failed", 3, "exit code 3") == "failed (exit code 3)"
    assert describe_end("failed", 1, "exit code 1; last output: diverged") == "failed (exit code 1): last output: diverged"
    assert describe_end("failed", 1, "ValueError: bad mesh size") == "failed (exit code 1): ValueError: bad mesh size"
    assert describe_end("failed", -9, "killed by SIGKILL") == "failed: killed by SIGKILL"
    assert describe_end("completed", 0, "") == describe_end("completed", 0, "exit code 0") == "completed (exit code 0)"
    assert describe_end("timed_out", None, "walltime 00:05:00 exceeded") == "timed_out: walltime 00:05:00 exceeded"


def test_run_then_complete(env):
    core, comm, procs, tmp = env
    core.handle(run("j1", tmp))
    assert not any(isinstance(m, Ack) for m in comm.sent)  # the first report acknowledges the run
    assert comm.reports() == [("j1", "running", "")]
    job_id, argv, job_env = procs.spawned[0]
    assert argv == ["sleep", "9"] and job_env["JOBVISOR_JOB_ID"] == "j1"
    assert procs.statuses == []  # the `running` status file waits a moment
    core.poll()
    assert procs.statuses == []
    core.jobs["j1"].phase.status_due -= STATUS_FILE_DELAY  # as if it had run that long
    core.poll()
    core.poll()  # once
    core.backend.on_exit(core.jobs["j1"], 0)
    assert comm.reports()[-1] == ("j1", "completed", "")
    assert procs.statuses == [("j1", "running"), ("j1", "completed")]


def test_a_short_job_writes_no_status_file(env):
    core, comm, procs, tmp = env
    core.handle(run("j1", tmp))
    core.backend.on_exit(core.jobs["j1"], 0)
    assert comm.reports()[-1] == ("j1", "completed", "")
    core.poll()
    assert procs.statuses == []  # it ended before its status file was due: the report says all


def test_cancel_is_idempotent_and_escalates(env):
    core, comm, procs, tmp = env
    core.handle(run("j1", tmp))
    core.handle(CancelJob("j1", "first"))
    core.handle(CancelJob("j1", "second"))
    assert procs.signals == [("j1", signal.SIGTERM)]
    (kill_timer,) = procs.timers
    assert kill_timer.delay == 2.0
    kill_timer.fire()
    assert procs.signals[-1] == ("j1", signal.SIGKILL)
    core.backend.on_exit(core.jobs["j1"], -9)
    assert comm.reports("j1")[-1] == ("j1", "canceled", "first")
    core.handle(CancelJob("j1", "late"))
    core.handle(CancelJob("never-heard-of"))
    assert len(procs.signals) == 2


def test_walltime(env):
    core, comm, procs, tmp = env
    core.handle(run("j1", tmp, resources={"walltime": "00:01:30"}))
    (timer,) = procs.timers
    assert timer.delay == 90.0
    timer.fire()
    assert procs.signals == [("j1", signal.SIGTERM)]
    core.backend.on_exit(core.jobs["j1"], -15)
    assert comm.reports("j1")[-1] == ("j1", "timed_out", "walltime 00:01:30 exceeded")
    assert all(t.cancelled for t in procs.timers[1:])  # the SIGKILL timer died with the job


def test_failures_before_start(env):
    core, comm, procs, tmp = env
    core.handle(run("j1", tmp, code="nope"))
    core.handle(run("j2", tmp, params={"script": 5}))
    procs.fail_spawn = FileNotFoundError(2, "No such file or directory")
    core.handle(run("j3", tmp))
    reasons = {job: reason for job, state, reason in comm.reports() if state == "failed"}
    assert reasons["j1"].startswith("unknown code 'nope'; installed codes:")
    assert reasons["j2"] == "params.script must be a non-empty string"
    assert reasons["j3"] == "cannot start 'sleep': No such file or directory"


def test_terminal_report_waits_for_link_then_hello_carries_it(env):
    core, comm, procs, tmp = env
    core.handle(run("j1", tmp))
    comm.ready = False
    core.backend.on_exit(core.jobs["j1"], 0)
    core.poll()
    assert ("j1", "completed", "") not in comm.reports()
    (report,) = core.hello_reports()
    assert report.state == "completed"
    comm.ready = True
    core.poll()
    assert ("j1", "completed", "") not in comm.reports()  # the Hello carried it: not twice
    assert [r.state for r in core.hello_reports()] == ["completed"]  # until forgotten
    core.handle(ForgetJobs(["j1"]))
    assert core.hello_reports() == [] and core.jobs == {}


def test_forget_keeps_a_running_newer_attempt(env):
    core, comm, procs, tmp = env
    core.handle(run("j1", tmp))
    core.backend.on_exit(core.jobs["j1"], 1)
    core.handle(run("j1", tmp, attempt=2))
    core.handle(ForgetJobs(["j1"]))  # late forget of attempt 1
    assert core.jobs["j1"].attempt == 2 and core.jobs["j1"].state is JobState.RUNNING


def test_rerun_while_running_is_refused_and_resent_run_reacked(env):
    core, comm, procs, tmp = env
    core.handle(run("j1", tmp))
    core.handle(run("j1", tmp))  # same attempt again: ack and current state, no second process
    assert len(procs.spawned) == 1 and sum(isinstance(m, Ack) for m in comm.sent) == 1
    assert comm.reports() == [("j1", "running", ""), ("j1", "running", "")]
    core.handle(run("j1", tmp, attempt=2))
    failed = [m.report for m in comm.sent if isinstance(m, StatusUpdate) and m.report.attempt == 2]
    assert failed[0].state == "failed" and "attempt 1 of this job is still running" in failed[0].reason


def test_hello_ack_resets_offsets_and_forgets(env, tmp_path):
    core, comm, procs, tmp = env
    core.handle(run("j1", tmp))
    core.handle(run("j2", tmp))
    job = core.jobs["j1"]
    job.run_dir.mkdir(parents=True, exist_ok=True)
    Path(job.log_path).write_bytes(b"0123456789")
    core.handle(HelloAck(log_offsets={"j1": 4}, forget=["j2"]))
    chunk = next(m for m in comm.sent if isinstance(m, LogChunk))
    assert (chunk.offset, chunk.data) == (4, b"456789")
    assert core.jobs["j2"].unwanted and procs.signals == [("j2", signal.SIGTERM)]
    core.backend.on_exit(core.jobs["j2"], -15)
    assert "j2" not in core.jobs and comm.reports("j2") == [("j2", "running", "")]


def test_status_and_kill(env):
    core, comm, procs, tmp = env
    core.handle(run("j1", tmp))
    core.handle(StatusRequest("op1"))
    reply = comm.sent[-1]
    assert isinstance(reply, OpReply) and reply.data["jobs"][0]["job_id"] == "j1"
    core.handle(KillAgent(reason="bye", cancel_jobs=False))
    assert comm.stops == [("bye", False)]


def test_prefetched_jobs_start_in_order_as_started_jobs_end(env):
    from jobvisor.protocol.agent_wire import CancelJob, StartPrefetched

    core, comm, procs, tmp_path = env
    core.handle(run("j1", tmp_path))
    for name in ("j2", "j3", "j4"):
        core.handle(dataclasses.replace(run(name, tmp_path), prefetched=True))
    spawned = lambda: [s[0] for s in procs.spawned]  # noqa: E731
    assert spawned() == ["j1"] and core.report(core.jobs["j2"]).prefetched
    assert procs.ahead == [tmp_path / name for name in ("j2", "j3", "j4")]  # run dirs made meanwhile
    core.handle(CancelJob("j3", "canceled by user"))  # prefetched: never starts, frees nothing
    assert ("j3", "canceled", "canceled by user") in comm.reports("j3") and spawned() == ["j1"]
    core.backend.on_exit(core.jobs["j1"], 0)
    assert spawned() == ["j1", "j2"]
    core.handle(StartPrefetched("j2"))  # already started: nothing more
    assert spawned() == ["j1", "j2"]
    core.handle(StartPrefetched("j4"))  # a slot elsewhere: start it now
    assert spawned() == ["j1", "j2", "j4"] and not core.prefetched


def test_cancel_while_the_fork_exec_runs_stops_the_job_once_it_exists(env):
    core, comm, procs, tmp = env
    procs.defer_spawn = True
    core.handle(run("j1", tmp))
    assert comm.reports() == [] and isinstance(core.jobs["j1"].phase, Spawning)
    core.handle(CancelJob("j1", "canceled by user"))
    procs.finish_spawn()
    assert ("j1", signal.SIGTERM) in procs.signals
    core.backend.on_exit(core.jobs["j1"], -15)
    assert comm.reports("j1")[-1] == ("j1", "canceled", "canceled by user")


def test_a_fork_exec_that_fails_in_the_worker_fails_the_job(env):
    core, comm, procs, tmp = env
    procs.defer_spawn = True
    core.handle(run("j1", tmp))
    procs.finish_spawn(FileNotFoundError(2, "No such file or directory"))
    assert comm.reports("j1")[-1] == ("j1", "failed", "cannot start 'sleep': No such file or directory")


def test_many_prefetched_jobs_that_all_fail_to_start_do_not_nest(env):
    core, comm, procs, tmp = env
    procs.fail_spawn = OSError(2, "No such file or directory")
    core.handle(run("j0", tmp))
    for n in range(1, 3000):  # far more than the recursion limit allows frames for
        core.handle(dataclasses.replace(run(f"j{n}", tmp), prefetched=True))
    while procs.timers:  # the loop's turns
        procs.timers.pop(0).fire()
    assert not core.prefetched
    failed = [r for r in comm.reports() if r[1] == "failed"]
    assert len(failed) == 3000 and all("No such file or directory" in r[2] for r in failed)


@pytest.mark.parametrize("crowded", [False, True], ids=["small run dir", "run dir of many files"])
def test_the_end_reports_the_last_progress_and_the_result_file(env, crowded):
    """Progress and result are looked for in one look at the run dir; one holding more entries
    than that look takes is probed file by file instead."""
    core, comm, procs, tmp = env
    core.handle(run("j1", tmp))
    run_dir = tmp / "j1"
    (run_dir / ".jobvisor").mkdir()
    (run_dir / ".jobvisor" / "result.json").write_text('{"answer": 42}')
    (run_dir / ".jobvisor-progress.json").write_text('{"fraction": 1.0, "message": "done"}')
    if crowded:
        for i in range(40):
            (run_dir / f"out{i}.dat").write_text("")
    core.backend.on_exit(core.jobs["j1"], 0)
    progress = [m for m in comm.sent if isinstance(m, Progress)]
    assert [(p.fraction, p.message) for p in progress] == [(1.0, "done")]
    final = [m.report for m in comm.sent if isinstance(m, StatusUpdate)][-1]
    assert final.state == "completed" and final.result == {"answer": 42}


def test_a_run_dir_without_result_or_progress_ends_with_neither(env):
    core, comm, procs, tmp = env
    core.handle(run("j1", tmp))
    core.backend.on_exit(core.jobs["j1"], 0)
    assert not any(isinstance(m, Progress) for m in comm.sent)
    final = [m.report for m in comm.sent if isinstance(m, StatusUpdate)][-1]
    assert final.state == "completed" and final.result is None
