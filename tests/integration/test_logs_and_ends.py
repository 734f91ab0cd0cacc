"""A job's end and its log against a real `up` (local driver, SQLite and PostgreSQL): the end
is committed without waiting for the job's output, the log read after the end is whole, and
every failure says why in words (exception, exit code, signal, walltime), once."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import aiohttp
import pytest

from tests.harness import REPO, Api, JobvisorProcess

pytestmark = pytest.mark.integration

LINE = b"a line of the output of a job, numbered by nothing\n"


async def terminal_event(server: JobvisorProcess, job_id_of: asyncio.Future, seen: asyncio.Future,
                         ready: asyncio.Event) -> None:
    """Follow GET /events until the job's terminal event; then, at once, note how much of its
    log the supervisor's store held at that moment (its file in the state dir)."""
    headers = {"Authorization": f"Bearer {server.token}"}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:
        async with session.get(server.url + "/api/v1/events", headers=headers) as resp:
            ready.set()
            tail = b""
            async for chunk in resp.content.iter_any():
                lines = (tail + chunk).split(b"\n")
                tail = lines.pop()
                for raw in lines:
                    if not raw.startswith(b"data:"):
                        continue
                    event = json.loads(raw[5:])
                    state = (event.get("data") or {}).get("state") if event.get("kind") == "transition" else None
                    job_id = await job_id_of
                    if event.get("job_id") == job_id and state in ("completed", "failed"):
                        path = server.state_dir / "logs" / job_id[-2:] / f"{job_id}.log"
                        stored = path.stat().st_size if path.exists() else 0
                        seen.set_result((state, stored))
                        return


async def test_a_jobs_end_does_not_wait_for_its_log_and_the_log_read_after_it_is_whole(server, api):
    """100 MB of output written in a fraction of a second: its end is committed and published
    while most of its log is still on its way, and reading the log after the end gets all of
    it, plain and followed."""
    size = 100_000_000
    job_id_of: asyncio.Future = asyncio.get_running_loop().create_future()
    seen: asyncio.Future = asyncio.get_running_loop().create_future()
    ready = asyncio.Event()
    follower = asyncio.create_task(terminal_event(server, job_id_of, seen, ready))
    try:
        await asyncio.wait_for(ready.wait(), 30)
        job = await api.submit({"code": "shell", "params": {"argv": ["head", "-c", str(size), "/dev/zero"]}})
        job_id_of.set_result(job["id"])
        state, stored_at_end = await asyncio.wait_for(seen, 120)
    finally:
        follower.cancel()
    assert state == "completed"
    assert stored_at_end < size, "the end waited for the whole log"
    log = await api.log(job["id"])
    assert len(log) == size and log.count(b"\0") == size
    done = await api.job(job["id"])
    assert done["state"] == "completed" and done["exit_code"] == 0


async def test_a_followed_log_ends_after_its_last_byte(server, api):
    count = 200_000  # about 9 MB
    job = await api.submit({"code": "shell", "params": {"script": f"yes '{LINE.decode().strip()}' | head -n {count}"}})
    await api.wait_state(job["id"], "completed", timeout=60)
    headers = {"Authorization": f"Bearer {server.token}"}
    received = bytearray()
    end = None
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:
        async with session.get(f"{server.url}/api/v1/jobs/{job['id']}/log", params={"follow": "1"}, headers=headers) as resp:
            kind, tail = "", b""
            async for chunk in resp.content.iter_any():  # an event's line can be a megabyte long
                lines = (tail + chunk).split(b"\n")
                tail = lines.pop()
                for line in lines:
                    if line.startswith(b"event:"):
                        kind = line[6:].strip().decode()
                    elif line.startswith(b"data:"):
                        data = json.loads(line[5:])
                        if kind == "log":
                            received += data["text"].encode()
                        elif kind == "end":
                            end = data
                if end is not None:
                    break
    assert end == {"state": "completed", "exit_code": 0}
    assert bytes(received) == LINE * count


async def wait_failed(api: Api, job: dict, state: str = "failed") -> dict:
    return await api.wait_state(job["id"], state, timeout=60)


async def test_a_python_jobs_reason_is_its_exception(api, tmp_path):
    module = tmp_path / "mesher.py"
    module.write_text("def mesh(size):\n    if size < 0:\n        raise ValueError('bad mesh size')\n    return size\n")
    job = await api.submit({"code": "python", "params": {"entry": "mesher:mesh", "args": {"size": -1},
                                                         "path": [str(tmp_path)]}})
    done = await wait_failed(api, job)
    assert done["reason"] == "ValueError: bad mesh size" and done["exit_code"] == 1
    assert b"Traceback" in await api.log(job["id"])  # the whole story stays in the log
    missing = await api.submit({"code": "python", "params": {"entry": "nosuchmodule:run"}})
    done = await wait_failed(api, missing)
    assert "no module named 'nosuchmodule'" in done["reason"] and done["exit_code"] == 2


async def test_a_shell_jobs_reason_is_its_exit_code_or_signal_and_walltime_is_named(server, api):
    exit3 = await api.submit({"code": "shell", "params": {"script": "echo oops; exit 3"}})
    silent = await api.submit({"code": "shell", "params": {"script": "exit 4"}})
    noisy = await api.submit({"code": "shell", "params": {"script": "printf 'step 1\\nmesh diverged at step 13\\n\\n' >&2; exit 1"}})
    killed = await api.submit({"code": "shell", "params": {"script": "kill -9 $$"}})
    late = await api.submit({"code": "shell", "params": {"argv": ["sleep", "60"]}, "resources": {"walltime": "00:00:01"}})
    done = await wait_failed(api, exit3)
    assert done["reason"] == "exit code 3; last output: oops" and done["exit_code"] == 3  # what it said last
    assert (await wait_failed(api, silent))["reason"] == "exit code 4"
    assert (await wait_failed(api, noisy))["reason"] == "exit code 1; last output: mesh diverged at step 13"
    done = await wait_failed(api, killed)
    assert done["reason"] == "killed by SIGKILL"
    done = await wait_failed(api, late, "timed_out")
    assert done["reason"] == "walltime 00:00:01 exceeded"
    env = {**os.environ, "JOBVISOR_URL": server.url, "JOBVISOR_TOKEN": server.token}
    waited = subprocess.run([sys.executable, "-m", "jobvisor", "wait", exit3["id"]], capture_output=True, text=True,
                            env=env, cwd=REPO, timeout=60)
    assert waited.stdout.strip() == "failed (exit code 3): last output: oops"  # the code once, then the job's last words


async def test_a_log_still_arriving_when_up_is_killed_is_whole_after_the_restart(server, api):
    """up is SIGKILLed right after a job's end was committed, most of its 100 MB log still on
    its way. The agent keeps the job until the supervisor has the whole log; the restarted
    supervisor finds the ended job when the agent announces it, and the log goes on from what
    its store holds."""
    size = 100_000_000
    job = await api.submit({"code": "shell", "params": {"argv": ["head", "-c", str(size), "/dev/zero"]}})
    await api.wait_state(job["id"], "completed", timeout=60)
    server.kill()
    path = server.state_dir / "logs" / job["id"][-2:] / f"{job['id']}.log"
    stored_at_kill = path.stat().st_size if path.exists() else 0
    assert stored_at_kill < size, "the log was whole before the kill: nothing was left to resume"
    server.restart()
    restarted = Api(server.url, api.token)  # the admin token of the first start
    try:
        deadline = asyncio.get_running_loop().time() + 90
        while True:  # until the agent is back and the rest of the log has come
            tail = await restarted.request("GET", f"/jobs/{job['id']}/log?offset={size - 1}")
            if len(tail) == 1:
                break
            assert asyncio.get_running_loop().time() < deadline, f"the log stopped at {path.stat().st_size} bytes"
            await asyncio.sleep(0.2)
        log = await restarted.log(job["id"])
        assert len(log) == size and log.count(b"\0") == size
        assert (await restarted.job(job["id"]))["state"] == "completed"
    finally:
        await restarted.close()
