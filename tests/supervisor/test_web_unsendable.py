"""A message for an agent that msgpack cannot pack fails what waits for it at once; the other
messages of its frame still go. Real supervisor, real local agent; the request comes through
the in-process link, so no gateway check stands in front (the second line of defence)."""

from __future__ import annotations

import asyncio
from typing import AsyncIterator

import pytest

from jobvisor.config import load_config
from jobvisor.errors import InvalidRequest
from jobvisor.protocol.agent_wire import AnalysisRequest
from jobvisor.protocol.common import Caller, Reply
from jobvisor.protocol.job_requests import GetJob, JobSpec, ListFiles, RunAnalysis, SubmitJobs
from supervisor.app import LocalLink, RunningSupervisor, start_supervisor
from tests.harness import free_port

pytestmark = pytest.mark.integration

ALICE = Caller(user="alice")


@pytest.fixture
async def running(tmp_path) -> AsyncIterator[tuple[RunningSupervisor, LocalLink]]:
    config = load_config(environ={
        "JOBVISOR_SERVER_STATE_DIR": str(tmp_path / "state"),
        "JOBVISOR_SERVER_SUPERVISOR_PORT": str(free_port()),
        "JOBVISOR_SUPERVISOR_ANALYSIS_TIMEOUT": "30",
        "JOBVISOR_SUPERVISOR_SHUTDOWN_TIMEOUT": "5",
        "JOBVISOR_LOCAL_STOP_TIMEOUT": "2",
    })
    sup = await start_supervisor(config)
    try:
        yield sup, sup.local_link()
    finally:
        await sup.close()


async def _data(link: LocalLink, request) -> object:
    reply = await link.request(request)
    assert isinstance(reply, Reply) and reply.ok, reply.error
    return reply.data


async def _running_job(link: LocalLink) -> str:
    submitted = await _data(link, SubmitJobs(ALICE, [JobSpec(code="shell", params={"argv": ["sleep", "60"]})]))
    job_id = submitted["jobs"][0]["id"]
    for _ in range(400):
        job = await _data(link, GetJob(ALICE, job_id))
        if job["state"] == "running":
            return job_id
        await asyncio.sleep(0.05)
    raise AssertionError(f"job {job_id} did not start: {job['state']} ({job['reason']})")


async def test_an_unpackable_analysis_fails_at_once_and_its_frame_goes_on(running):
    sup, link = running
    job_id = await _running_job(link)
    # the request handlers refuse such args (a 400 naming the field): the op is made straight
    # on the core here, as a check that missed a value would leave it
    job = sup.core.jobs.get(job_id)
    bad = sup.core.agent_op(job, lambda op_id, run_dir: AnalysisRequest(op_id, job.id, job.code, run_dir, {"x": 2**70}, 30),
                            30, "analyse it")
    good = link.request(ListFiles(ALICE, job_id))
    outcome, files = await asyncio.wait_for(asyncio.gather(bad, good, return_exceptions=True), 10)
    assert isinstance(outcome, InvalidRequest) and "cannot be sent to the agent" in outcome.detail, outcome
    assert files.ok, files.error
    refused = await link.request(RunAnalysis(ALICE, job_id, args={"x": 2**70}))
    assert not refused.ok and refused.error.kind == "invalid" and refused.error.field == "args.x"
    job = await _data(link, GetJob(ALICE, job_id))
    assert job["state"] == "running" and job["attempt"] == 1
