"""The fake supervisor answers like the real one: the same requests, sent over the same wire to
both, get replies with the same keys and the same types. A change of the supervisor's replies
that the fake does not follow fails here, not silently in the gateway's tests.

Both are driven through the same scenario: a job that ran to its end (a log line, a file), one
that is running, one that waits in the queue, then every gateway request about them. The real one runs them on a real agent;
the fake is moved through the same states with its test controls.
"""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator

import pytest

from api_gateway.context import SUPERVISOR
from jobvisor.errors import OpError
from jobvisor.protocol.common import Caller
from jobvisor.protocol.job_requests import (
    CancelJobRequest, GetJob, JobSpec, ListFiles, ListJobs, ReadFile, ReadLog, RunAnalysis, SubmitJobs,
)
from jobvisor.protocol.system_requests import GetAgents, GetQueue, GetStatus

from real_env import RealEnv, start_real_env

pytestmark = pytest.mark.integration

ALICE = Caller(user="alice")
ROOT = Caller(user="root", is_admin=True)
# values whose inside is the code's, the driver's or the run's business, not the reply's shape
OPAQUE = frozenset({"params", "result", "info", "counts", "drivers"})
FINISHED = JobSpec(code="shell", params={"script": "echo out; echo data > out.txt"})
RUNNING = JobSpec(code="shell", params={"argv": ["sleep", "30"]})
QUEUED = JobSpec(code="shell", params={"argv": ["true"]})  # waits: alice's one cpu runs RUNNING


def shape(value: Any, key: str = "") -> Any:
    """The keys and types of a reply, recursively (a list by its first item)."""
    if key in OPAQUE:
        return type(value).__name__
    if isinstance(value, dict):
        return {k: shape(v, k) for k, v in sorted(value.items())}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return type(value).__name__


def differences(fake: Any, real: Any, path: str) -> list[str]:
    """Where two shapes differ, one line each: `get.history[0].at: fake float, real int`."""
    if isinstance(fake, dict) and isinstance(real, dict):
        out = [f"{path}.{k}: only in the {'fake' if k in fake else 'real one'}" for k in sorted(fake.keys() ^ real.keys())]
        for k in sorted(fake.keys() & real.keys()):
            out += differences(fake[k], real[k], f"{path}.{k}")
        return out
    if isinstance(fake, list) and isinstance(real, list) and fake and real:
        return differences(fake[0], real[0], f"{path}[0]")
    return [] if fake == real else [f"{path}: fake {fake}, real {real}"]


async def _scenario(op, finish) -> dict[str, Any]:
    """The replies to every request of the scenario, by name; `finish(done_id, running_id)`
    brings the first job to its end and the second to running."""
    submitted = await op(SubmitJobs(ALICE, [FINISHED]))
    done = submitted["jobs"][0]["id"]
    await asyncio.sleep(0.002)  # ids are ordered by their millisecond: the running job is the newest
    running = (await op(SubmitJobs(ALICE, [RUNNING])))["jobs"][0]["id"]
    await finish(done, running)
    await asyncio.sleep(0.002)  # and the queued one newer still, on the fake too (its finish takes no time)
    await op(SubmitJobs(ALICE, [QUEUED]))
    replies: dict[str, Any] = {"submit": submitted}
    requests = {
        "list": ListJobs(ALICE, limit=1),
        "list_queued": ListJobs(ALICE, states=["queued"]),
        "list_running": ListJobs(ALICE, states=["running"]),
        "get": GetJob(ALICE, done),
        "get_running": GetJob(ALICE, running),
        "log": ReadLog(ALICE, done),
        "files": ListFiles(ALICE, done),
        "file": ReadFile(ALICE, done, "out.txt"),
        "queue": GetQueue(ROOT),
        "agents": GetAgents(ROOT),
        "status": GetStatus(),
        "analysis": RunAnalysis(ALICE, done, {"x": 1}),
        "cancel": CancelJobRequest(ALICE, running),
    }
    for name, request in requests.items():
        replies[name] = await op(request)
    for name, request in {"cancel_again": CancelJobRequest(ALICE, done), "missing": GetJob(ALICE, "j0000000000000000000"),
                          "no_file": ReadFile(ALICE, done, "nothing.txt")}.items():
        try:
            await op(request)
        except OpError as exc:
            replies[name] = {"kind": str(exc.kind), "field": exc.field}
    return replies


@pytest.fixture
async def real(tmp_path) -> AsyncIterator[RealEnv]:
    """The real supervisor with one cpu per user: a second job of alice's waits in the queue."""
    env = await start_real_env(tmp_path, JOBVISOR_SUPERVISOR_PER_USER_CPUS="1")
    try:
        yield env
    finally:
        await env.close()


async def test_the_fake_answers_with_the_real_supervisors_keys_and_types(env, real):
    async def finish_real(done: str, running: str) -> None:
        await real.wait_state(done, "completed")
        await real.wait_state(running, "running")

    async def finish_fake(done: str, running: str) -> None:
        env.fake.set_state(done, "running")
        env.fake.append_log(done, b"out\n")
        env.fake.files[done]["out.txt"] = b"data\n"
        env.fake.set_state(done, "completed", exit_code=0, reason="exit code 0")
        env.fake.set_state(running, "running")

    real_replies = await _scenario(real.gateway.app[SUPERVISOR].op, finish_real)
    fake_replies = await _scenario(env.gateway.app[SUPERVISOR].op, finish_fake)
    assert real_replies.keys() == fake_replies.keys()
    for replies in (real_replies, fake_replies):  # so the shapes of queued jobs were compared too
        assert replies["queue"]["jobs"] and isinstance(replies["list_queued"]["jobs"][0]["queue_position"], int)
    drift = [line for name in real_replies for line in differences(shape(fake_replies[name]), shape(real_replies[name]), name)]
    assert not drift, "\n".join(drift)
    # and the values that say how a reply is read
    assert [h["state"] for h in fake_replies["get"]["history"]] == [h["state"] for h in real_replies["get"]["history"]]
    assert {a["state"] for a in fake_replies["agents"]["agents"]} <= {a["state"] for a in real_replies["agents"]["agents"]}
    for name in ("cancel_again", "missing", "no_file"):
        assert fake_replies[name]["kind"] == real_replies[name]["kind"], name
