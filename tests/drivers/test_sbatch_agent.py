"""The agent's Slurm side against a fake Slurm: one squeue call per poll for all jobs, the
per-user cap on jobs in the queue, sbatch refusals, recovery without a second submission."""

from __future__ import annotations

import asyncio
from pathlib import Path

from jobvisor.config import AgentConfig
from jobvisor.protocol.agent_wire import CancelJob, ForgetJobs, RunJob, StatusUpdate
from jobvisor.states import JobState

from agent.core import AgentCore
from agent.slurm.app import recover
from agent.slurm.backend import SlurmBackend
from agent.slurm.commands import FinalInfo, QueueEntry, SlurmCommandError
from agent.slurm.queue import SlurmQueue
from agent.slurm.record import Submit


class FakeSlurm:
    def __init__(self):
        self.next_id = 100
        self.states: dict[str, str] = {}
        self.submitted: list[str] = []
        self.queue_calls: list[list[str]] = []
        self.canceled: list[str] = []
        self.refuse: str | None = None
        self.names: dict[str, str] = {}
        self.env = {}

    async def submit(self, path):
        if self.refuse:
            raise SlurmCommandError(self.refuse)
        self.next_id += 1
        job_id = str(self.next_id)
        self.submitted.append(path)
        self.states[job_id] = "PENDING"
        return job_id

    async def queue(self, ids):
        self.queue_calls.append(list(ids))
        return {i: QueueEntry(i, self.states[i], "Priority" if self.states[i] == "PENDING" else "None", "n1")
                for i in ids if i in self.states}

    async def final_info(self, job_id):
        return FinalInfo(self.states.get(job_id, ""), "0:0", "None") if job_id in self.states else None

    async def find_by_name(self, name):
        return self.names.get(name)

    async def cancel(self, job_id):
        self.canceled.append(job_id)
        self.states[job_id] = "CANCELLED"


class FakeComm:
    def __init__(self):
        self.sent = []

    def send(self, message):
        self.sent.append(message)

    def linked(self):
        return True

    def log_ready(self):
        return True

    def run_op(self, op_id, make_reply):
        raise AssertionError("no ops here")

    def stop(self, reason, cancel_jobs):
        pass

    def reports(self, job_id):
        return [m.report for m in self.sent if isinstance(m, StatusUpdate) and m.report.job_id == job_id]


def make(tmp_path, max_queued=10):
    loop = asyncio.get_running_loop()
    slurm = FakeSlurm()
    queue = SlurmQueue(loop, slurm, poll_interval=0.1, max_queued=max_queued)
    comm = FakeComm()
    core = AgentCore("a1", AgentConfig(), comm, SlurmBackend(queue))
    return slurm, queue, comm, core


def run(core, tmp_path, job_id, **resources):
    core.handle(RunJob(job_id, 1, "shell", {"argv": ["true"]}, resources, str(tmp_path / job_id)))


async def test_one_squeue_call_per_poll_covers_every_job(tmp_path):
    slurm, queue, comm, core = make(tmp_path)
    for i in range(5):
        run(core, tmp_path, f"j{i}", partition="debug")
    await queue.turn()  # submits all, then polls all of them with one call
    assert len(slurm.submitted) == 5
    assert len(slurm.queue_calls) == 1 and len(slurm.queue_calls[0]) == 5
    await queue.turn()  # the poll interval has not passed: no second call
    assert len(slurm.queue_calls) == 1
    report = comm.reports("j0")[-1]
    assert report.state == "starting" and report.info["slurm_job_id"] == "101"
    assert report.info["slurm_state"] == "PENDING" and report.info["slurm_reason"] == "Priority"
    slurm.states["101"] = "RUNNING"
    slurm.states["102"] = "COMPLETED"
    await queue.poll()
    assert len(slurm.queue_calls) == 2
    assert comm.reports("j0")[-1].state == "running"
    assert [r.state for r in comm.reports("j1")][-2:] == ["running", "completed"]


async def test_the_cap_keeps_jobs_in_the_agent_until_slurm_has_room(tmp_path):
    slurm, queue, comm, core = make(tmp_path, max_queued=2)
    for i in range(4):
        run(core, tmp_path, f"j{i}")
    await queue.turn()
    assert len(slurm.submitted) == 2
    waiting = core.backend.side(core.jobs["j3"])
    assert waiting.submit is Submit.WAITING and "most allowed" in waiting.slurm_reason
    slurm.states["101"] = "COMPLETED"
    await queue.poll()
    await queue.turn()
    assert len(slurm.submitted) == 3
    core.handle(CancelJob("j3", "canceled by user"))  # never reached Slurm: canceled at once
    assert core.jobs["j3"].state is JobState.CANCELED and "104" not in slurm.canceled


async def test_an_sbatch_refusal_fails_the_job_with_slurms_message(tmp_path):
    slurm, queue, comm, core = make(tmp_path)
    slurm.refuse = "Batch job submission failed: Invalid partition name specified"
    run(core, tmp_path, "j1", partition="nope")
    await queue.turn()
    report = comm.reports("j1")[-1]
    assert report.state == "failed" and report.reason == "sbatch refused the job: " + slurm.refuse


async def test_cancel_is_scancel_and_the_end_comes_from_slurm(tmp_path):
    slurm, queue, comm, core = make(tmp_path)
    run(core, tmp_path, "j1")
    await queue.turn()
    core.handle(CancelJob("j1", "canceled by user"))
    assert core.jobs["j1"].state is JobState.STARTING
    await queue.turn()
    assert slurm.canceled == ["101"]
    await queue.poll()
    report = comm.reports("j1")[-1]
    assert report.state == "canceled" and report.reason == "canceled by user"


async def test_a_restarted_agent_finds_its_jobs_and_never_submits_twice(tmp_path):
    slurm, queue, comm, core = make(tmp_path)
    run(core, tmp_path, "j1")
    run(core, tmp_path, "j2")
    await queue.turn()
    # j2's sbatch answer was lost: its file still says "submitting"
    job2 = core.backend.side(core.jobs["j2"])
    job2.submit, job2.slurm_job_id = Submit.SUBMITTING, ""
    job2.save()
    slurm2, queue2, comm2, core2 = make(tmp_path)
    slurm2.states = dict(slurm.states)
    slurm2.next_id = slurm.next_id
    slurm2.names["jv-j2-1"] = "102"
    assert recover(core2, core2.backend, tmp_path) == 2
    reports = {r.job_id: r for r in core2.hello_reports()}
    assert reports["j1"].info["slurm_job_id"] == "101" and reports["j1"].state == "starting"
    await queue2.turn()
    assert slurm2.submitted == []  # nothing submitted again
    assert core2.backend.side(core2.jobs["j2"]).slurm_job_id == "102"
    slurm2.states["101"] = "RUNNING"
    await queue2.poll()
    assert comm2.reports("j1")[-1].state == "running"


async def test_a_job_that_ended_while_disconnected_is_announced_ended_and_kept_until_its_log_is_sent(tmp_path):
    slurm, queue, comm, core = make(tmp_path)
    run(core, tmp_path, "j1")
    await queue.turn()
    job = core.jobs["j1"]
    Path(job.log_path).write_text("before\nafter\n")
    slurm.states["101"] = "COMPLETED"
    await queue.poll()
    job.phase.report_sent = False  # as if the link was down when it ended
    job.sent_offset = 0
    (report,) = core.hello_reports()
    assert report.state == "completed" and report.log_size == len("before\nafter\n")  # its end, with the final size
    assert job.report_sent
    core.handle(ForgetJobs(["j1"]))  # its end is committed, its log not yet all sent: it stays
    assert core.jobs.get("j1") is job
