"""Values JSON holds and msgpack does not (a number beyond 64 bits, NaN, a lone surrogate, a
very deep nesting) are a 400 naming their field at once, on a real gateway, supervisor and
agent, over both links the gateway has to a supervisor; the running job goes on.

Before the check (jobvisor.wire_values) such a number in an analysis's args was lost with the
frame that carried it to the agent (the op answered 504 after analysis_timeout), and in a
job's params it made the submit a 500.
"""

from __future__ import annotations

import time
from typing import AsyncIterator

import pytest

from api_gateway.context import SUPERVISOR
from jobvisor.errors import InvalidRequest
from jobvisor.protocol.common import Caller
from jobvisor.protocol.job_requests import RunAnalysis

from real_env import RealEnv, start_real_env

pytestmark = pytest.mark.integration

TOO_BIG = -18446744073709387776  # the fuzzer's body: below -2**63
ANALYSIS_TIMEOUT = "20"  # a lost op would answer after this; the tests want far less


@pytest.fixture(params=[True, False], ids=["in_process", "over_http"])
async def real(request, tmp_path) -> AsyncIterator[RealEnv]:
    env = await start_real_env(tmp_path, in_process=request.param, JOBVISOR_SUPERVISOR_ANALYSIS_TIMEOUT=ANALYSIS_TIMEOUT)
    try:
        yield env
    finally:
        await env.close()


async def _running_sleep(real: RealEnv) -> str:
    job = await real.submit(params={"argv": ["sleep", "60"]})
    await real.wait_state(job["id"], "running")
    return job["id"]


async def test_analysis_args_beyond_64_bits_are_a_400_at_once_and_the_run_goes_on(real):
    job_id = await _running_sleep(real)
    bodies = {
        "args.x": {"x": TOO_BIG},
        "args.deep.list[1]": {"deep": {"list": [1, 2**64]}},
        "args.nan": b'{"nan": NaN}',
    }
    for field, body in bodies.items():
        started = time.monotonic()
        kwargs = {"data": body, "headers": {"Content-Type": "application/json"}} if isinstance(body, bytes) else {"json": body}
        status, problem, _ = await real.call("POST", f"/jobs/{job_id}/analysis", **kwargs)
        assert status == 400, problem
        assert time.monotonic() - started < 5.0
        assert problem["field"] == field
        assert ("NaN" if field == "args.nan" else "64 bits") in problem["detail"]
    job = await real.wait_state(job_id, "running")
    assert job["attempt"] == 1
    status, _, _ = await real.call("POST", f"/jobs/{job_id}/cancel")
    assert status == 200
    await real.wait_state(job_id, "canceled")


async def test_job_params_beyond_64_bits_are_a_400_naming_the_field(real):
    python_job = {"code": "python", "params": {"entry": "mod:run", "args": {"x": TOO_BIG}}}
    status, problem, _ = await real.call("POST", "/jobs", json=python_job)
    assert status == 400, problem
    assert problem["field"] == "params.args.x"
    shell_job = {"code": "shell", "params": {"argv": ["true"]}}
    status, problem, _ = await real.call("POST", "/jobs", json=[shell_job, python_job])
    assert status == 400 and problem["field"] == "jobs[1].params.args.x", problem
    plugin_job = {"code": "a-plugin-the-gateway-does-not-know", "params": {"n": [0, {"m": 2**70}]}}
    status, problem, _ = await real.call("POST", "/jobs", json=plugin_job)
    assert status == 400 and problem["field"] == "params.n[1].m", problem
    # a lone surrogate (not UTF-8) in a name, and a nesting too deep to pack
    status, problem, _ = await real.call(
        "POST", "/jobs", data=b'{"code": "shell", "params": {"argv": ["true"]}, "name": "\\ud800"}',
        headers={"Content-Type": "application/json"},
    )
    assert status == 400 and problem["field"] == "name", problem
    for depth, field in ((100, "params[0][0]"), (5000, "body")):
        body = b'{"code": "plug", "params": ' + b"[" * depth + b"1" + b"]" * depth + b"}"
        status, problem, _ = await real.call("POST", "/jobs", data=body, headers={"Content-Type": "application/json"})
        assert status == 400 and problem["field"].startswith(field) and "deep" in problem["detail"], problem
    # nothing was submitted, and the supervisor goes on
    status, listing, _ = await real.call("GET", "/jobs")
    assert status == 200 and listing["jobs"] == []
    job = await real.submit(params={"argv": ["true"]})
    assert (await real.wait_state(job["id"], {"completed", "failed"}))["state"] == "completed"


async def test_the_bounds_of_64_bits_go_through_and_read_back_exactly(real):
    args = {"low": -(2**63), "high": 2**64 - 1, "text": "é ✓", "nested": [{"f": 0.5}]}
    status, job, _ = await real.call("POST", "/jobs", json={"code": "python", "params": {"entry": "mod:run", "args": args}})
    assert status == 201, job
    status, shown, _ = await real.call("GET", f"/jobs/{job['id']}")
    assert status == 200 and shown["params"]["args"] == args
    for too_far, field in ((-(2**63) - 1, "params.args.low"), (2**64, "params.args.high")):
        status, problem, _ = await real.call(
            "POST", "/jobs", json={"code": "python", "params": {"entry": "mod:run", "args": {**args, field.rsplit(".", 1)[1]: too_far}}},
        )
        assert status == 400 and problem["field"] == field, problem


async def test_a_cluster_login_with_a_lone_surrogate_is_a_400(real):
    status, problem, _ = await real.call(
        "POST", "/clusters/nowhere/login", data=b'{"username": "u", "password": "\\udfff"}',
        headers={"Content-Type": "application/json"},
    )
    assert status == 400 and problem["field"] == "password", problem


async def test_a_value_the_checks_missed_still_fails_at_once_as_invalid(real):
    """Past the gateway's validation (a request made straight on its supervisor client): over
    HTTP the gateway cannot encode it, in process the supervisor checks it again; either way
    the op fails at once as the request's fault, and the run goes on."""
    job_id = await _running_sleep(real)
    caller = Caller(user="alice")
    started = time.monotonic()
    with pytest.raises(InvalidRequest, match="cannot be sent|too large for 64 bits"):
        await real.gateway.app[SUPERVISOR].op(RunAnalysis(caller=caller, job_id=job_id, args={"x": 2**70}))
    assert time.monotonic() - started < 5.0
    assert (await real.wait_state(job_id, "running"))["attempt"] == 1


async def test_resources_past_what_the_wire_carries_are_a_400(real):
    for resources, field in (({"memory": "99999999999999999T"}, "resources.memory"),
                             ({"walltime": "9" * 5000 + "-00:00:00"}, "resources.walltime"),
                             ({"gpus": 2**64}, "resources.gpus")):
        status, problem, _ = await real.call("POST", "/jobs", json={"code": "shell", "params": {"argv": ["true"]}, "resources": resources})
        assert status == 400 and problem["field"] == field, problem
