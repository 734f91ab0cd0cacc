"""Submit-time checks of the built-in codes' params: a malformed job is a 400 naming the field
before any op reaches the supervisor; a plugin the gateway does not know passes unchecked.
Against the real supervisor: the good jobs are submitted (and run) for real."""

from __future__ import annotations

import pytest

from jobvisor.protocol.job_requests import SubmitJobs

PROBLEM = "application/problem+json"

GOOD = [
    {"code": "shell", "params": {"argv": ["echo", "hi"], "env": {"A": "1"}}},
    {"code": "shell", "params": {"script": "echo $A", "shell": "/bin/bash"}},
    {"code": "python", "params": {"entry": "pkg.sim:run", "args": {"n": 3}, "path": ["lib"]}},
    {"code": "demo", "params": {"steps": 10, "dt": 0.5}},
    {"code": "demo", "params": None},
]

BAD = [
    ({"code": "shell", "params": {"argv": "notalist"}}, "params.argv", "list of strings"),
    ({"code": "shell", "params": {}}, "params.argv", "exactly one of"),
    ({"code": "shell", "params": {"argv": []}}, "params.argv", "must not be empty"),
    ({"code": "shell", "params": {"script": ""}}, "params.script", "non-empty string"),
    ({"code": "shell", "params": {"argv": ["x"], "env": {"A": 1}}}, "params.env.A", "must be a string"),
    ({"code": "shell", "params": {"argv": ["x"], "argz": 1}}, "params.argz", "unknown param"),
    ({"code": "shell", "params": ["ls"]}, "params", "must be an object"),
    ({"code": "python", "params": {}}, "params.entry", "entry"),
    ({"code": "python", "params": {"entry": "no_colon"}}, "params.entry", "module:function"),
    ({"code": "python", "params": {"entry": "m:f", "args": [1]}}, "params.args", "argument names"),
    ({"code": "python", "params": {"entry": "m:f", "args": {"x": float("nan")}}}, "params.args", "plain JSON"),
    ({"code": "python", "params": {"entry": "m:f", "path": "lib"}}, "params.path", "list of strings"),
    ({"code": "demo", "params": {"steps": 0}}, "params.steps", "between"),
    ({"code": "demo", "params": {"dt": "x"}}, "params.dt", "number"),
    ({"code": "demo", "params": {"speed": 1}}, "params.speed", "unknown param"),
]


def _submits(real) -> int:
    return sum(isinstance(r, SubmitJobs) for r in real.requests)


@pytest.mark.parametrize("job, field, words", BAD, ids=[f"{j['code']}-{f}-{w}" for j, f, w in BAD])
async def test_single_submit_with_bad_params_is_400_naming_the_field(real, job, field, words):
    status, body, headers = await real.call("POST", "/jobs", json=job)
    assert status == 400 and headers["Content-Type"].startswith(PROBLEM), body
    assert body["field"] == field and words in body["detail"], body
    assert _submits(real) == 0


@pytest.mark.parametrize("job, field, words", BAD, ids=[f"{j['code']}-{f}-{w}" for j, f, w in BAD])
async def test_list_submit_names_the_job_and_its_field(real, job, field, words):
    status, body, headers = await real.call("POST", "/jobs", json=[*GOOD[:3], job, GOOD[3]])
    assert status == 400 and headers["Content-Type"].startswith(PROBLEM), body
    assert body["field"] == f"jobs[3].{field}" and words in body["detail"], body
    assert _submits(real) == 0


@pytest.mark.parametrize("job", GOOD, ids=[j["code"] for j in GOOD])
async def test_single_submit_with_good_params_is_201(real, job):
    status, body, _ = await real.call("POST", "/jobs", json=job)
    assert status == 201, body
    assert body["code"] == job["code"] and body["params"] == job["params"]


async def test_list_submit_with_good_params_is_201_and_passes_params_unchanged(real):
    status, body, _ = await real.call("POST", "/jobs", json=GOOD)
    assert status == 201 and [j["params"] for j in body] == [j["params"] for j in GOOD]
    (submit,) = [r for r in real.requests if isinstance(r, SubmitJobs)]
    assert [s.params for s in submit.jobs] == [j["params"] for j in GOOD]  # no defaults filled in


async def test_a_code_the_gateway_does_not_know_goes_on_and_the_local_driver_refuses_it_naming_the_nearest(real):
    """A plugin may be installed only where agents run (an image, a cluster): the gateway lets
    it through. The local driver's agents run this very installation, so the supervisor knows
    their codes and refuses a misspelled one at submit, with the nearest name."""
    status, body, _ = await real.call("POST", "/jobs", json={"code": "dmeo", "params": {"steps": 10}})
    assert status == 400 and body["field"] == "code", body
    assert "unknown code 'dmeo'; did you mean 'demo'?" in body["detail"]
    assert _submits(real) == 1  # the gateway passed it on
    status, body, _ = await real.call("POST", "/jobs", json=[GOOD[0], {"code": "site_plugin", "params": {}}])
    assert status == 400 and body["field"] == "jobs[1].code" and "installed codes: demo, python, shell" in body["detail"]


async def test_other_fields_are_reported_before_params(real):
    job = {"code": "shell", "params": {"argv": "notalist"}, "resources": {"cpus": "two"}}
    status, body, _ = await real.call("POST", "/jobs", json=job)
    assert status == 400 and body["field"] == "resources.cpus"
