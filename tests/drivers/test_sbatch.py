"""The sbatch driver against the real testbed: Slurm (munge, slurmctld, slurmd) and an sshd
login node on loopback with a test user (etc/testbed/start-slurm.sh). `jobvisor up` runs as a
real process; its agents run as the test user on the "login node" and submit with sbatch."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.drivers import slurmbed
from tests.harness import Api, ApiError

pytestmark = pytest.mark.integration
CLUSTER = slurmbed.CLUSTER


@pytest.fixture
async def server(make_server):
    return make_server()


@pytest.fixture
async def api(server):
    client = Api(server.url, server.token)
    yield client
    await client.close()


def sbatch_job(script: str, **resources) -> dict:
    return {"code": "shell", "params": {"script": script}, "driver": "sbatch",
            "resources": {"cluster": CLUSTER, **resources}}


async def login_with_key(api: Api) -> dict:
    return await api.request("POST", f"/clusters/{CLUSTER}/login", json={"username": slurmbed.user(), "method": "key"})


def files_under(*roots: Path) -> list[Path]:
    out = []
    for root in roots:
        for dirpath, _, names in os.walk(root):
            out.extend(Path(dirpath) / n for n in names)
    return out


def assert_nowhere(secret: str, *roots: Path) -> None:
    needle = secret.encode()
    for path in files_under(*roots):
        try:
            data = path.read_bytes()
        except OSError:
            continue
        assert needle not in data, f"the password was written to {path}"


async def test_key_login_then_the_job_runs_under_slurm_as_the_user(server, api):
    submitted_at = time.time()
    job = await api.submit(sbatch_job('echo "slurm job $SLURM_JOB_ID as $(whoami) in $PWD"'))
    await asyncio.sleep(1.0)
    queued = await api.job(job["id"])
    assert queued["state"] == "queued" and queued["reason"].startswith("login required"), queued
    reply = await login_with_key(api)
    assert reply["logged_in"] and reply["username"] == slurmbed.user() and reply["method"] == "key"
    login_at = time.time()
    running = await api.wait_state(job["id"], {"running", "completed", "failed"}, timeout=60)
    seen_running = time.time()
    done = await api.wait_state(job["id"], {"completed", "failed"}, timeout=60)
    assert done["state"] == "completed" and done["exit_code"] == 0, done
    slurm_id = done["info"]["slurm_job_id"]
    assert slurm_id and done["info"]["slurm_state"] == "COMPLETED"
    log = (await api.log(job["id"])).decode()
    assert log.startswith(f"slurm job {slurm_id} as {slurmbed.user()} in /") and job["id"] in log
    history = [h["state"] for h in done["history"]]
    assert history[:2] == ["queued", "starting"] and "running" in history
    print(f"\nlogin -> running seen by the client: {seen_running - login_at:.2f} s "
          f"(submitted {login_at - submitted_at:.1f} s before the login; poll interval "
          f"{server.sbatch_env['JOBVISOR_SBATCH_POLL_INTERVAL']} s; first state seen {running['state']})")


async def wait_node_idle(timeout: float = 30.0) -> None:
    """Until the test cluster runs nothing (a measurement on a busy node would mean nothing)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=10)
        if out.stdout.split() and all(s == "idle" for s in out.stdout.split()):
            return
        await asyncio.sleep(0.1)
    queue = subprocess.run(["squeue", "-a"], capture_output=True, text=True, timeout=10).stdout
    raise AssertionError(f"the test cluster is still busy after {timeout} s:\n{queue}")


async def test_submit_to_running_latency_on_an_idle_cluster(server, api):
    await login_with_key(api)
    warm = await api.submit(sbatch_job("true"))  # the first job also starts the agent
    await api.wait_state(warm["id"], "completed", timeout=60)
    await wait_node_idle()
    latencies = []
    for _ in range(3):
        t0 = time.time()
        job = await api.submit(sbatch_job("sleep 60"))
        await api.wait_state(job["id"], "running", timeout=60)
        latencies.append(time.time() - t0)
        await api.cancel(job["id"])
        await api.wait_state(job["id"], "canceled", timeout=60)
        await wait_node_idle()
    print(f"\nsubmit -> running (idle test cluster, poll interval "
          f"{server.sbatch_env['JOBVISOR_SBATCH_POLL_INTERVAL']} s): " + ", ".join(f"{x:.2f} s" for x in latencies))
    assert min(latencies) < 10


async def test_password_login_and_a_wrong_password_stores_nothing(server, api):
    job = await api.submit(sbatch_job("echo via password"))
    wrong = "wrong-" + os.urandom(6).hex()
    with pytest.raises(ApiError) as info:
        await api.request("POST", f"/clusters/{CLUSTER}/login", json={"username": slurmbed.user(), "password": wrong})
    assert info.value.status == 403 and "refused" in info.value.body["detail"], info.value.body
    still = await api.job(job["id"])
    assert still["state"] == "queued" and still["reason"].startswith("login required")
    with pytest.raises(ApiError) as info:
        await api.request("POST", "/clusters/nope/login", json={"username": slurmbed.user(), "password": "x"})
    assert info.value.status == 404
    right = slurmbed.password()
    reply = await api.request("POST", f"/clusters/{CLUSTER}/login",
                              json={"username": slurmbed.user(), "password": right})
    assert reply["method"] == "password"
    done = await api.wait_state(job["id"], {"completed", "failed"}, timeout=60)
    assert done["state"] == "completed", done
    assert await api.log(job["id"]) == b"via password\n"
    remote_work = Path(server.sbatch_env["JOBVISOR_SBATCH_WORK_DIR"].replace("$HOME", slurmbed.settings()["REMOTE_HOME"]))
    for secret in (wrong, right):
        assert_nowhere(secret, server.state_dir, remote_work)


async def test_resources_reach_sbatch_lines_and_cancel_runs_scancel(server, api):
    await login_with_key(api)
    job = await api.submit(sbatch_job("echo started; sleep 300", cpus=2, memory="300M", walltime="00:04:00",
                                      partition="debug", sbatch_args=["--comment=jobvisor-test"]))
    running = await api.wait_state(job["id"], {"running", "failed"}, timeout=60)
    assert running["state"] == "running", running
    slurm_id = running["info"]["slurm_job_id"]
    fields = slurmbed.scontrol(slurm_id)
    assert fields["JobName"] == f"jv-{job['id']}-1"
    assert fields["TimeLimit"] == "00:04:00" and fields["Partition"] == "debug"
    assert fields["MinMemoryNode"] == "300M" and fields["NumCPUs"] == "2"
    assert fields["Comment"] == "jobvisor-test" and fields["UserId"].startswith(slurmbed.user())
    await api.cancel(job["id"])
    done = await api.wait_state(job["id"], {"canceled", "completed", "failed"}, timeout=30)
    assert done["state"] == "canceled" and done["reason"] == "canceled by user", done
    assert slurmbed.scontrol(slurm_id)["JobState"] == "CANCELLED"


async def test_an_invalid_partition_fails_with_slurms_message(server, api):
    await login_with_key(api)
    job = await api.submit(sbatch_job("true", partition="no_such_partition"))
    done = await api.wait_state(job["id"], {"completed", "failed"}, timeout=60)
    assert done["state"] == "failed"
    assert done["reason"].startswith("sbatch refused the job:") and "invalid partition" in done["reason"].lower(), done


@pytest.mark.timeout(240)
async def test_walltime_exceeded_is_timed_out(server, api):
    await login_with_key(api)
    job = await api.submit(sbatch_job("echo started; sleep 600", walltime="00:01:00"))
    await api.wait_state(job["id"], "running", timeout=60)
    done = await api.wait_state(job["id"], {"timed_out", "failed", "completed", "canceled"}, timeout=180)
    assert done["state"] == "timed_out", done
    assert "walltime 00:01:00 exceeded" in done["reason"] and "TIMEOUT" in done["reason"], done
    assert done["info"]["slurm_state"] == "TIMEOUT"


async def test_agent_killed_on_the_login_node_is_restarted_and_finds_its_job(server, api):
    await login_with_key(api)
    job = await api.submit(sbatch_job("echo before; sleep 8; echo after"))
    running = await api.wait_state(job["id"], "running", timeout=60)
    agents = (await api.request("GET", "/agents"))["agents"]
    (agent,) = [a for a in agents if a["id"] == running["agent_id"]]
    os.kill(agent["pid"], signal.SIGKILL)  # the agent's python process, running as the test user
    done = await api.wait_state(job["id"], {"completed", "failed", "lost"}, timeout=60)
    assert done["state"] == "completed", done
    assert done["info"]["slurm_job_id"] == running["info"]["slurm_job_id"]
    assert await api.log(job["id"]) == b"before\nafter\n"
    agents = (await api.request("GET", "/agents"))["agents"]
    (again,) = [a for a in agents if a["id"] == running["agent_id"]]
    assert again["pid"] != agent["pid"] and again["state"] == "connected"
    out = subprocess.run(["squeue", "-h", "-u", slurmbed.user(), "-n", f"jv-{job['id']}-1", "-t", "all", "-o", "%i"],
                         capture_output=True, text=True, timeout=10)
    assert out.stdout.split() == [running["info"]["slurm_job_id"]], "submitted twice"


async def test_supervisor_killed_and_restarted_mid_run(server, api):
    await login_with_key(api)
    job = await api.submit(sbatch_job("echo before; sleep 6; echo after"))
    await api.wait_state(job["id"], "running", timeout=60)
    server.kill()
    await asyncio.sleep(1)
    server.restart()
    done = await api.wait_state(job["id"], {"completed", "failed", "lost"}, timeout=60)
    assert done["state"] == "completed", done
    assert await api.log(job["id"]) == b"before\nafter\n"


async def test_cli_login_and_submit(server, api):
    import sys

    from tests.harness import REPO

    def cli(*args, stdin=""):
        env = {**os.environ, "JOBVISOR_URL": server.url, "JOBVISOR_TOKEN": server.token}
        return subprocess.run([sys.executable, "-m", "jobvisor", *args], input=stdin, capture_output=True,
                              text=True, env=env, cwd=REPO, timeout=60)

    bad = cli("login", CLUSTER, "--user", slurmbed.user(), "--password-stdin", stdin="not-the-password\n")
    assert bad.returncode == 1 and "refused" in bad.stderr, bad
    good = cli("login", CLUSTER, "--user", slurmbed.user(), "--password-stdin", stdin=slurmbed.password() + "\n")
    assert good.returncode == 0 and f"logged in to {CLUSTER} as {slurmbed.user()}" in good.stdout, good
    submitted = cli("submit", "--driver", "sbatch", "--cluster", CLUSTER, "--cpus", "1", "--mem", "100M",
                    "--walltime", "00:02:00", "--partition", "debug", "--", "sh", "-c", "echo cli $SLURM_JOB_ID")
    assert submitted.returncode == 0, submitted
    job_id = submitted.stdout.strip()
    done = await api.wait_state(job_id, {"completed", "failed"}, timeout=60)
    assert done["state"] == "completed" and done["resources"]["extra"]["partition"] == "debug", done
    assert (await api.log(job_id)).decode() == f"cli {done['info']['slurm_job_id']}\n"
    shown = cli("show", job_id)
    assert "slurm_job_id" in shown.stdout and done["info"]["slurm_job_id"] in shown.stdout


async def test_an_agent_shut_down_over_the_api_scancels_its_job_and_a_new_agent_serves_the_next(server, api):
    await login_with_key(api)
    job = await api.submit(sbatch_job("echo started; sleep 300"))
    running = await api.wait_state(job["id"], "running", timeout=60)
    slurm_id = running["info"]["slurm_job_id"]
    answer = await api.request("POST", f"/agents/{running['agent_id']}/shutdown")
    assert answer["canceled"] == 1 and answer["agent"]["state"] == "stopping"
    done = await api.wait_state(job["id"], {"canceled", "completed", "failed", "lost"}, timeout=60)
    assert done["state"] == "canceled" and done["reason"] == "canceled by user (agent_shutdown)", done
    assert slurmbed.scontrol(slurm_id)["JobState"] == "CANCELLED"
    deadline = time.monotonic() + 30
    while any(a["id"] == running["agent_id"] for a in (await api.request("GET", "/agents"))["agents"]):
        assert time.monotonic() < deadline, "the agent was not stopped"
        await asyncio.sleep(0.5)
    after = await api.submit(sbatch_job("echo again"))
    ran = await api.wait_state(after["id"], {"completed", "failed"}, timeout=90)
    assert ran["state"] == "completed" and ran["agent_id"] != running["agent_id"], ran
