"""The docker driver against a real Docker engine: `jobvisor up` in a subprocess on loopback,
its agents in real containers (host networking: the supervisor stays on 127.0.0.1).

Outside CI these tests skip when no engine answers, saying how to get one
(etc/testbed/start-docker.sh); with CI=true a missing engine fails them."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from pathlib import Path

import pytest

from drivers.docker.spec import LABEL_AGENT, LABEL_INSTANCE, LABEL_KIND, LABEL_USER, container_name, instance_id
from tests.contract.backends import BACKENDS, require
from tests.drivers import dockerbed
from tests.harness import REPO, Api, ApiError, JobvisorProcess

pytestmark = pytest.mark.integration

ENGINE = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"


@pytest.fixture(autouse=True)
def engine_here():
    require(BACKENDS["docker"])


@pytest.fixture
def start(tmp_path):
    """start(**docker_settings) -> (server, api); everything is stopped and removed after."""
    started: list[tuple[JobvisorProcess, Api]] = []

    async def start(env: dict[str, str] | None = None, **docker) -> tuple[JobvisorProcess, Api]:
        server = JobvisorProcess(tmp_path / f"state{len(started)}", env={**dockerbed.server_env(**docker), **(env or {})})
        await asyncio.to_thread(server.start)
        api = Api(server.url, server.token)
        started.append((server, api))
        return server, api

    yield start
    for server, _ in started:  # each test closes its api in its own loop
        server.cleanup()
        dockerbed.remove_containers(server.state_dir)


def shell(script: str, **extra) -> dict:
    return {"code": "shell", "params": {"script": script}, "driver": "docker", **extra}


async def agent_container(server: JobvisorProcess, api: Api, job_id: str):
    job = await api.job(job_id)
    return await asyncio.to_thread(dockerbed.container_of, server.state_dir, job["agent_id"])


async def test_a_job_runs_in_a_locked_down_container_with_its_memory_limit(start):
    server, api = await start(memory="256M", cpus="1.5")
    try:
        job = await api.submit(shell("cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes; id -u"))
        done = await api.wait_state(job["id"], {"completed", "failed"}, timeout=60)
        assert done["state"] == "completed", done["reason"]
        limit, uid = (await api.log(job["id"])).decode().split()
        assert int(limit) == 256 * 1024**2
        assert uid == "65534"  # the supervisor under test is root: agents run as nobody

        container = await agent_container(server, api, job["id"])
        attrs = container.attrs
        instance = instance_id(server.state_dir)
        assert container.name == container_name(instance, "docker", "admin")
        assert container.labels[LABEL_INSTANCE] == instance
        assert container.labels[LABEL_USER] == "admin" and container.labels[LABEL_KIND] == "docker"
        assert container.labels[LABEL_AGENT] == done["agent_id"]
        host = attrs["HostConfig"]
        assert host["Init"] is True and "no-new-privileges" in host["SecurityOpt"]
        assert host["Memory"] == 256 * 1024**2 and host["NanoCpus"] == 1_500_000_000
        assert host["ReadonlyRootfs"] is True and host["CapDrop"] == ["ALL"]
        assert attrs["Config"]["User"] == "65534:65534"
        writable = [m["Destination"] for m in attrs["Mounts"] if m["RW"]]
        assert writable == [str(server.state_dir / "docker-runs" / "admin")]
        (token,) = [e.split("=", 1)[1] for e in attrs["Config"]["Env"] if e.startswith("JOBVISOR_AGENT_TOKEN=")]
        assert token not in " ".join([attrs["Path"], *attrs["Args"]])
        assert token not in server.log_path.read_text()
        assert token.encode() not in container.logs()
    finally:
        await api.close()


async def test_cancel_kills_the_job_in_its_container(start):
    server, api = await start()
    try:
        job = await api.submit(shell("echo started; sleep 120"))
        await api.wait_state(job["id"], "running", timeout=60)
        await api.cancel(job["id"])
        done = await api.wait_state(job["id"], "canceled", timeout=30)
        assert done["reason"] == "canceled by user"
        # The same container, seen from inside: no `sleep 120` left (the pattern does not match itself).
        check = await api.submit(shell("cat /proc/[0-9]*/cmdline 2>/dev/null | tr '\\0' ' ' | grep -c 'slee[p] 120' || true"))
        await api.wait_state(check["id"], "completed", timeout=60)
        assert (await api.log(check["id"])).decode().strip() == "0"
        assert (await api.job(check["id"]))["agent_id"] == done["agent_id"]
    finally:
        await api.close()


async def test_two_users_get_their_own_containers_and_cannot_read_each_others_files(start):
    import subprocess
    import sys

    server, api = await start()
    out = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "jobvisor", "user", "add", "carol", "--state-dir", str(server.state_dir)],
        capture_output=True, text=True, check=True, cwd=REPO, timeout=60)
    carol = Api(server.url, out.stdout.strip().splitlines()[-1])
    try:
        mine = await api.submit(shell("echo admin-secret > secret.txt"))
        await api.wait_state(mine["id"], "completed", timeout=60)
        runs = server.state_dir / "docker-runs"
        theirs = await carol.submit(shell(f"ls {runs}; cat {runs}/admin/{mine['id']}/secret.txt || echo cannot-read"))
        await carol.wait_state(theirs["id"], "completed", timeout=60)
        seen = (await carol.log(theirs["id"])).decode()
        assert "admin-secret" not in seen and "cannot-read" in seen
        assert seen.split()[0] == "carol"  # the only run root mounted in carol's container
        mine_c = await agent_container(server, api, mine["id"])
        theirs_c = await agent_container(server, carol, theirs["id"])
        assert mine_c.id != theirs_c.id
        assert (mine_c.labels[LABEL_USER], theirs_c.labels[LABEL_USER]) == ("admin", "carol")
        with pytest.raises(ApiError) as info:
            await carol.request("GET", f"/jobs/{mine['id']}/files/secret.txt")
        assert info.value.status == 404
    finally:
        await carol.close()
        await api.close()


async def test_docker_kill_of_the_agent_container_makes_its_job_lost(start):
    server, api = await start()
    try:
        job = await api.submit(shell("sleep 120"))
        await api.wait_state(job["id"], "running", timeout=60)
        container = await agent_container(server, api, job["id"])
        await asyncio.to_thread(container.kill)
        done = await api.wait_state(job["id"], "lost", timeout=15)
        assert f"agent container {container.name} exited with code 137" in done["reason"], done["reason"]
        await dockerbed.until(lambda: not dockerbed.containers(server.state_dir), 15, "the killed container is removed")
    finally:
        await api.close()


async def test_a_job_past_its_memory_limit_fails_with_an_out_of_memory_reason(start):
    server, api = await start(memory="128M")
    try:
        with pytest.raises(ApiError) as info:
            await api.submit(shell("true", resources={"memory": "1G"}))
        assert info.value.status == 400 and "128 MiB" in info.value.body["detail"]
        hog = {"code": "shell", "driver": "docker",
               "params": {"argv": ["python", "-c", "blocks = [b'x' * (32 << 20) for _ in range(32)]"]}}
        job = await api.submit(hog)
        done = await api.wait_state(job["id"], {"completed", "failed", "lost"}, timeout=60)
        assert done["state"] == "failed", done
        assert done["reason"].startswith("out of memory") and "128 MiB" in done["reason"], done["reason"]
        # The agent survived it: the next job runs in the same container.
        after = await api.submit(shell("echo fine"))
        assert (await api.wait_state(after["id"], {"completed", "failed"}, timeout=60))["state"] == "completed"
        assert (await api.job(after["id"]))["agent_id"] == done["agent_id"]
    finally:
        await api.close()


async def test_supervisor_sigkill_and_restart_adopts_the_running_container(start):
    server, api = await start(env={"JOBVISOR_SUPERVISOR_RECONNECT_GRACE": "20"})
    try:
        # Long enough for the agent to reconnect while the job still runs (its reconnect backoff
        # is capped at 5 s), so the output flows live; a job that ends while its agent is cut
        # off is the contract suite's case.
        job = await api.submit(shell("echo before; sleep 10; echo after"))
        await api.wait_state(job["id"], "running", timeout=60)
        container = await agent_container(server, api, job["id"])
        server.kill()
        await asyncio.sleep(1)
        await asyncio.to_thread(server.restart)
        done = await api.wait_state(job["id"], {"completed", "failed", "lost"}, timeout=60)
        assert done["state"] == "completed", done
        assert await _log_becomes(api, job["id"], b"before\nafter\n", 5)
        assert (await agent_container(server, api, job["id"])).id == container.id
        # The adopted container is watched: killing it now makes the next job lost at once.
        second = await api.submit(shell("sleep 120"))
        await api.wait_state(second["id"], "running", timeout=60)
        assert (await api.job(second["id"]))["agent_id"] == done["agent_id"]
        await asyncio.to_thread(container.kill)
        lost = await api.wait_state(second["id"], "lost", timeout=8)
        assert "agent container" in lost["reason"]
    finally:
        await api.close()


async def test_containers_of_an_earlier_supervisor_without_an_agent_are_removed(start, tmp_path):
    state_dir = tmp_path / "state0"  # the first server `start` makes
    labels = {LABEL_INSTANCE: instance_id(state_dir), LABEL_AGENT: "a-gone", LABEL_USER: "ghost", LABEL_KIND: "docker"}
    mounts = [f"{d}:{d}:ro" for d in ("/usr", "/lib", "/lib64", "/bin") if os.path.exists(d)]

    def leave_containers() -> None:
        engine = dockerbed.client()
        try:
            exited = engine.containers.run(dockerbed.IMAGE, ["/bin/true"], labels={**labels, LABEL_AGENT: "a-done"},
                                           volumes=mounts, detach=True)
            exited.wait(timeout=20)
            engine.containers.run(dockerbed.IMAGE, ["/bin/sleep", "300"], labels=labels, volumes=mounts, detach=True)
        finally:
            engine.close()

    await asyncio.to_thread(leave_containers)
    server, api = await start(env={"JOBVISOR_SUPERVISOR_RECONNECT_GRACE": "1"})
    try:
        job = await api.submit(shell("echo hi"))  # the docker driver starts with its first job
        assert (await api.wait_state(job["id"], {"completed", "failed"}, timeout=60))["state"] == "completed"

        def agents_left() -> set[str]:
            return {c.labels[LABEL_AGENT] for c in dockerbed.containers(server.state_dir)}

        await dockerbed.until(lambda: not agents_left() & {"a-done", "a-gone"}, 20, "orphans are removed")
        assert (await api.job(job["id"]))["agent_id"] in agents_left()  # the live agent stays
    finally:
        await api.close()


async def test_a_missing_image_fails_the_job_with_its_name(start):
    server, api = await start(image="jobvisor-agent:no-such-tag")
    try:
        job = await api.submit(shell("true"))
        done = await api.wait_state(job["id"], {"completed", "failed"}, timeout=30)
        assert done["state"] == "failed"
        assert "'jobvisor-agent:no-such-tag' is not on" in done["reason"], done["reason"]
    finally:
        await api.close()


async def test_an_engine_that_does_not_answer_holds_the_job_not_the_supervisor(start, tmp_path):
    """The engine's silence is retryable (EngineUnavailable): the job stays queued with a reason
    naming the engine and the next try; the supervisor goes on."""
    with _silent_engine(tmp_path / "hung.sock") as url:
        server, api = await start(hosts=url, api_timeout="1")
        try:
            job = await api.submit(shell("true"))
            began = time.monotonic()
            while f"docker engine {url} unavailable: it did not answer within 1 s" not in (await api.job(job["id"]))["reason"]:
                tick = time.monotonic()
                await api.request("GET", "/status")
                assert time.monotonic() - tick < 1.0, "the supervisor stalled"
                assert time.monotonic() - began < 30, await api.job(job["id"])
                await asyncio.sleep(0.1)
            held = await api.job(job["id"])
            assert held["state"] == "queued" and "retrying in" in held["reason"], held
        finally:
            await api.close()


async def test_a_host_that_is_down_is_skipped_with_a_logged_reason(start, tmp_path):
    down = f"unix://{tmp_path}/no-engine.sock"
    server, api = await start(hosts=f"{down}=4,{ENGINE}=2")
    try:
        job = await api.submit(shell("echo on the live host"))
        done = await api.wait_state(job["id"], {"completed", "failed"}, timeout=60)
        assert done["state"] == "completed", done["reason"]
        log = server.log_path.read_text()
        assert f"docker host {down} skipped for a new agent" in log
        with pytest.raises(ApiError) as info:  # 4 slots at most on one host
            await api.submit(shell("true", resources={"cpus": 5}))
        assert info.value.status == 400
    finally:
        await api.close()


async def _log_becomes(api: Api, job_id: str, expected: bytes, timeout: float) -> bytes:
    """The job's full log (its last bytes may be committed just after its final state)."""
    deadline = time.monotonic() + timeout
    while (log := await api.log(job_id)) != expected and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert log == expected
    return log




class _silent_engine:
    """A unix socket that accepts connections and never answers: a hung Docker engine."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX)
        self.held: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)

    def __enter__(self) -> str:
        self.sock.bind(str(self.path))
        self.sock.listen(16)
        self.thread.start()
        return f"unix://{self.path}"

    def __exit__(self, *exc) -> None:
        self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        for conn in self.held:
            conn.close()
        self.thread.join(5)


async def test_an_agent_shut_down_over_the_api_leaves_with_its_container(start):
    server, api = await start()
    try:
        job = await api.submit(shell("sleep 120"))
        await api.wait_state(job["id"], "running", timeout=60)
        container = await agent_container(server, api, job["id"])
        answer = await api.request("POST", f"/agents/{(await api.job(job['id']))['agent_id']}/shutdown")
        assert answer["canceled"] == 1 and answer["agent"]["state"] == "stopping"
        done = await api.wait_state(job["id"], "canceled", timeout=30)
        assert done["reason"] == "canceled by user (agent_shutdown)"
        await dockerbed.until(lambda: not dockerbed.containers(server.state_dir), 30, f"container {container.name} removed")
        deadline = time.monotonic() + 15
        while (await api.request("GET", "/agents"))["agents"]:  # gone, not left `stopping`
            assert time.monotonic() < deadline, "the stopped agent is still listed"
            await asyncio.sleep(0.2)
        after = await api.submit(shell("true"))  # the next job gets a new agent, in a new container
        ran = await api.wait_state(after["id"], "completed", timeout=60)
        assert ran["agent_id"] != done["agent_id"]
        assert (await agent_container(server, api, after["id"])).id != container.id
    finally:
        await api.close()
