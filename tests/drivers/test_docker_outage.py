"""The real Docker engine stopped while docker jobs are queued, then started again: the jobs
wait with a reason naming the engine and the next try, and run once it is back. None fails.

The engine is the machine's own dockerd (as etc/testbed/start-docker.sh starts it): the test
stops it with SIGTERM and starts it again with that script, so it needs root, as CI has."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.contract.backends import BACKENDS, require
from tests.drivers import dockerbed
from tests.harness import REPO, Api, JobvisorProcess

pytestmark = pytest.mark.integration

PIDFILE = Path("/var/run/docker.pid")


def _engine_pid() -> int | None:
    try:
        pid = int(PIDFILE.read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        return pid if Path(f"/proc/{pid}/comm").read_text().strip() == "dockerd" else None
    except OSError:
        return None




def _start_engine() -> None:
    subprocess.run(["bash", str(REPO / "etc/testbed/start-docker.sh")], check=True, timeout=180,
                   stdout=subprocess.DEVNULL)


@pytest.fixture
def engine_we_may_stop():
    require(BACKENDS["docker"])
    if os.geteuid() != 0 or _engine_pid() is None:
        reason = "needs root and a dockerd started by etc/testbed/start-docker.sh (pid in /var/run/docker.pid)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    yield
    if dockerbed.missing() is not None:  # whatever happened, leave the engine running
        _start_engine()


async def test_jobs_queued_while_the_engine_is_down_run_when_it_is_back(engine_we_may_stop, tmp_path):
    server = JobvisorProcess(tmp_path / "state", env=dockerbed.server_env())
    await asyncio.to_thread(server.start)
    api = Api(server.url, server.token)
    try:
        pid = _engine_pid()
        assert pid is not None
        os.kill(pid, signal.SIGTERM)
        await dockerbed.until(lambda: _engine_pid() is None and dockerbed.missing() is not None, 60, "dockerd stopped")

        jobs = [await api.submit({"code": "shell", "params": {"script": f"echo back {n}"}, "driver": "docker"})
                for n in range(3)]
        first = jobs[0]["id"]
        began = time.monotonic()
        while "retrying in" not in (job := await api.job(first))["reason"]:
            assert job["state"] == "queued", job
            assert time.monotonic() - began < 30, job
            await asyncio.sleep(0.2)
        assert job["state"] == "queued" and "unavailable" in job["reason"], job["reason"]

        await asyncio.to_thread(_start_engine)
        for job in jobs:
            done = await api.wait_state(job["id"], {"completed", "failed", "canceled", "lost"}, timeout=120)
            assert done["state"] == "completed", done["reason"]
        assert [(await api.log(j["id"])).decode() for j in jobs] == [f"back {n}\n" for n in range(3)]
        history = (await api.job(first))["history"]
        assert not [h for h in history if h["state"] == "failed"], history
    finally:
        await api.close()
        server.cleanup()
        dockerbed.remove_containers(server.state_dir)
