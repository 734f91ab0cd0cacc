"""Job arrays, retries with backoff and resubmit against a real `jobvisor up` (local driver),
on SQLite and PostgreSQL: what the jobs saw (their index, how many of them ran at once) is
read from the jobs themselves, not inferred from timing."""

from __future__ import annotations

import asyncio
import sys
from datetime import datetime

import pytest

from tests.harness import REPO, Api, ApiError, JobvisorProcess

pytestmark = pytest.mark.integration


def _at(event: dict) -> float:
    """A history entry's time (ISO 8601 UTC) as seconds."""
    return datetime.fromisoformat(event["at"]).timestamp()


@pytest.fixture
def server(tmp_path, database, monkeypatch):
    """`up` with 4 cpu slots (so a cap of 2 is the array's, not the driver's) and a retry
    backoff of 1 s."""
    for key, value in database.env.items():
        monkeypatch.setenv(key, value)
    proc = JobvisorProcess(tmp_path / "state", env={"JOBVISOR_LOCAL_CPUS": "4", "JOBVISOR_SUPERVISOR_RETRY_BACKOFF": "1"})
    proc.start()
    yield proc
    proc.cleanup()


async def _other_user(server: JobvisorProcess, name: str) -> Api:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "jobvisor", "user", "add", name, "--state-dir", str(server.state_dir),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=server.env, cwd=REPO,
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    return Api(server.url, out.decode().strip().splitlines()[-1])


async def test_an_array_runs_one_job_per_index_and_never_more_than_its_cap(api, tmp_path):
    shared = tmp_path / "running"
    shared.mkdir()
    counts = tmp_path / "counts"
    # each element marks itself running, records how many are running, works, unmarks itself
    script = (f'echo "index $JOBVISOR_ARRAY_INDEX"; touch {shared}/$JOBVISOR_ARRAY_INDEX; '
              f'ls {shared} | wc -l >> {counts}; sleep 0.4; rm {shared}/$JOBVISOR_ARRAY_INDEX')
    array = await api.submit({"code": "shell", "params": {"script": script}, "array": "1-7:2,10-11%2", "name": "sweep"})
    assert array["count"] == 6 and array["cap"] == 2 and array["array"] == "1-7:2,10-11%2"
    assert array["array_id"] == array["job_ids"][0]
    ends = [await api.wait_state(job_id, "completed") for job_id in array["job_ids"]]
    assert [job["array_index"] for job in ends] == [1, 3, 5, 7, 10, 11]
    assert {job["array_id"] for job in ends} == {array["array_id"]} and {job["array_cap"] for job in ends} == {2}
    for job in ends:
        assert await api.log(job["id"]) == f"index {job['array_index']}\n".encode()
    seen = [int(n) for n in counts.read_text().split()]
    assert len(seen) == 6 and max(seen) <= 2, seen
    listed = await api.request("GET", f"/jobs?array={array['array_id']}")
    assert sorted(job["id"] for job in listed["jobs"]) == sorted(array["job_ids"])


async def test_a_capped_array_leaves_room_for_the_users_other_jobs(api):
    array = await api.submit({"code": "shell", "params": {"argv": ["sleep", "30"]}, "array": "0-5%1"})
    first = await api.wait_state(array["job_ids"][0], "running")
    lone = await api.submit({"code": "shell", "params": {"argv": ["true"]}})
    await api.wait_state(lone["id"], "completed")  # not stuck behind the array's parked elements
    for job_id in array["job_ids"][1:]:
        job = await api.job(job_id)
        assert job["state"] == "queued", job
    await api.cancel(first["id"])
    second = await api.wait_state(array["job_ids"][1], "running")  # the cap's slot passes on, in order
    assert second["array_index"] == 1
    for job_id in array["job_ids"]:
        try:
            await api.cancel(job_id)
        except ApiError as exc:
            assert exc.status == 409


async def test_bad_arrays_and_retry_on_name_the_field(api):
    for body, field in [
        ({"code": "shell", "params": {"argv": ["true"]}, "array": "1-x"}, "array"),
        ({"code": "shell", "params": {"argv": ["true"]}, "array": "1-3,2"}, "array"),
        ({"code": "shell", "params": {"argv": ["true"]}, "array": "1-3%0"}, "array"),
        ({"code": "shell", "params": {"argv": ["true"]}, "retry_on": ["failed", "canceled"]}, "retry_on"),
        ([{"code": "shell", "params": {"argv": ["true"]}, "array": "1-3"}], "jobs[0].array"),
    ]:
        with pytest.raises(ApiError) as err:
            await api.submit(body)
        assert err.value.status == 400 and err.value.body["field"] == field, err.value.body


async def test_retry_on_failed_waits_out_a_backoff_between_attempts(api):
    job = await api.submit({"code": "shell", "params": {"argv": ["sh", "-c", "exit 3"]},
                            "max_retries": 2, "retry_on": ["failed"]})
    assert job["retry_on"] == ["failed", "lost"]
    deadline = asyncio.get_running_loop().time() + 30
    while True:
        job = await api.job(job["id"])
        if job["state"] == "failed" and job["attempt"] == 3:
            break
        assert asyncio.get_running_loop().time() < deadline, job
        await asyncio.sleep(0.05)
    history = job["history"]
    ends = [h for h in history if h["state"] == "failed"]
    retries = [h for h in history if h["state"] == "queued" and h["attempt"] > 1]
    starts = {h["attempt"]: _at(h) for h in history if h["state"] == "starting"}
    assert [h["attempt"] for h in ends] == [1, 2, 3] and [h["attempt"] for h in retries] == [2, 3], history
    assert "retrying in 1 s" in retries[0]["reason"] and "retrying in 2 s" in retries[1]["reason"]
    # no attempt starts before its backoff is over (1 s, then 2 s)
    assert starts[2] - _at(ends[0]) >= 1.0 and starts[3] - _at(ends[1]) >= 2.0
    assert job["retry_at"] is None


async def test_without_retry_on_a_failed_job_is_not_retried(api):
    job = await api.submit({"code": "shell", "params": {"argv": ["false"]}, "max_retries": 3})
    job = await api.wait_state(job["id"], "failed")
    assert job["attempt"] == 1 and job["retry_on"] == ["lost"]


async def test_a_retry_waiting_out_its_backoff_survives_a_restart(tmp_path, database, monkeypatch):
    for key, value in database.env.items():
        monkeypatch.setenv(key, value)
    server = JobvisorProcess(tmp_path / "state", env={"JOBVISOR_SUPERVISOR_RETRY_BACKOFF": "6"})
    server.start()
    try:
        api = Api(server.url, server.token)
        job = await api.submit({"code": "shell", "params": {"argv": ["false"]}, "max_retries": 1, "retry_on": "failed"})
        while (job := await api.job(job["id"]))["attempt"] < 2:
            await asyncio.sleep(0.05)
        assert job["state"] == "queued" and job["retry_at"] is not None and "retrying in 6 s" in job["reason"]
        await api.close()
        server.stop()
        server.restart()
        api = Api(server.url, server.token or api.token)
        after = await api.job(job["id"])
        assert after["state"] == "queued" and after["retry_at"] == job["retry_at"]
        after = await api.wait_state(job["id"], "failed", timeout=30)
        history = {(h["attempt"], h["state"]): h for h in after["history"]}
        assert after["attempt"] == 2 and (2, "starting") in history, after["history"]
        assert _at(history[(2, "starting")]) - _at(history[(1, "failed")]) >= 6.0
        await api.close()
    finally:
        server.cleanup()


async def test_resubmit_makes_a_new_job_from_an_old_ones_spec(api, server):
    old = await api.submit({"code": "shell", "params": {"argv": ["echo", "one"]}, "name": "again",
                            "resources": {"memory": "256M"}, "max_retries": 1, "retry_on": ["timed_out"]})
    await api.wait_state(old["id"], "completed")
    new = await api.request("POST", f"/jobs/{old['id']}/resubmit", json={"params": {"argv": ["echo", "two"]}})
    assert new["id"] != old["id"] and new["name"] == "again" and new["params"] == {"argv": ["echo", "two"]}
    assert new["resources"] == old["resources"] and new["max_retries"] == 1 and new["retry_on"] == ["lost", "timed_out"]
    assert new["reason"] == f"resubmitted from {old['id']}"
    await api.wait_state(new["id"], "completed")
    assert await api.log(new["id"]) == b"two\n"
    same = await api.request("POST", f"/jobs/{old['id']}/resubmit")  # no body: the same spec
    assert same["params"] == {"argv": ["echo", "one"]}

    with pytest.raises(ApiError) as err:
        await api.request("POST", f"/jobs/{old['id']}/resubmit", json={"params": {"argv.x": 1}})
    assert err.value.status == 400 and err.value.body["field"] == "params.argv.x"
    with pytest.raises(ApiError) as err:
        await api.request("POST", f"/jobs/{old['id']}/resubmit", json={"params": {"argv": "echo"}})
    assert err.value.status == 400 and err.value.body["field"].startswith("params")

    bob = await _other_user(server, "bob")
    try:
        with pytest.raises(ApiError) as err:
            await bob.request("POST", f"/jobs/{old['id']}/resubmit")
        assert err.value.status == 404  # another user's job, exactly like a missing one
    finally:
        await bob.close()


async def test_an_arrays_cap_survives_a_restart(tmp_path, database, monkeypatch):
    for key, value in database.env.items():
        monkeypatch.setenv(key, value)
    server = JobvisorProcess(tmp_path / "state", env={"JOBVISOR_LOCAL_CPUS": "4"})
    server.start()
    shared = tmp_path / "running"
    shared.mkdir()
    counts = tmp_path / "counts"
    script = (f'touch {shared}/$JOBVISOR_ARRAY_INDEX; ls {shared} | wc -l >> {counts}; sleep 1; '
              f'rm {shared}/$JOBVISOR_ARRAY_INDEX')
    try:
        api = Api(server.url, server.token)
        array = await api.submit({"code": "shell", "params": {"script": script}, "array": "0-3%1"})
        await api.wait_state(array["job_ids"][0], "running")
        await api.close()
        server.kill()  # SIGKILL: its agent goes on running element 0
        server.restart()
        api = Api(server.url, server.token or api.token)
        ends = [await api.wait_state(job_id, "completed", timeout=60) for job_id in array["job_ids"]]
        assert [job["array_cap"] for job in ends] == [1, 1, 1, 1]
        seen = [int(n) for n in counts.read_text().split()]
        assert len(seen) == 4 and max(seen) == 1, seen  # never two at once, before or after the restart
        await api.close()
    finally:
        server.cleanup()
