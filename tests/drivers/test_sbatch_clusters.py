"""Several Slurm clusters behind one jobvisor, against the real testbed.

The testbed has one Slurm and one sshd, so both clusters here name the same login node; they
share a file system and even a work dir, which is the hard case: each user must still get one
SSH login and one agent per cluster, and one cluster's agent start must not kill the other's."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.drivers import slurmbed
from tests.harness import REPO, Api, ApiError

pytestmark = pytest.mark.integration

ALPHA, BETA = slurmbed.CLUSTER, "beta"
# [sbatch] (from the environment: slurmbed.server_env) is ALPHA; BETA inherits its settings
# (known_hosts, key, agent command, work dir, partition) and names the login node itself
TWO_CLUSTERS = '[sbatch.clusters.beta]\nlogin_host = "127.0.0.1"\naccount = ""\n'


def job_on(cluster: str | None, script: str) -> dict:
    resources = {"cluster": cluster} if cluster else {}
    return {"code": "shell", "params": {"script": script}, "driver": "sbatch", "resources": resources}


async def login(api: Api, cluster: str) -> dict:
    return await api.request("POST", f"/clusters/{cluster}/login", json={"username": slurmbed.user(), "method": "key"})


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] != "Z"
    except OSError:
        return False


async def test_each_cluster_has_its_own_login_and_agent(make_server):
    server = make_server(config=TWO_CLUSTERS)
    api = Api(server.url, server.token)
    try:
        clusters = await api.request("GET", "/clusters")
        assert [(c["name"], c["default"], c["logged_in"]) for c in clusters] == [(ALPHA, True, False), (BETA, False, False)]

        on_beta = await api.submit(job_on(BETA, 'echo "beta $SLURM_JOB_ID in $PWD"'))
        on_alpha = await api.submit(job_on(None, 'echo "alpha $SLURM_JOB_ID in $PWD"'))  # the default cluster
        assert on_alpha["resources"]["extra"]["cluster"] == ALPHA and on_alpha["driver"] == "sbatch"

        await login(api, ALPHA)
        done = await api.wait_state(on_alpha["id"], {"completed", "failed"}, timeout=60)
        assert done["state"] == "completed", done
        assert f"/runs/{ALPHA}/" in (await api.log(on_alpha["id"])).decode()
        waiting = await api.job(on_beta["id"])
        assert waiting["state"] == "queued" and f"log in to cluster '{BETA}'" in waiting["reason"], waiting
        clusters = await api.request("GET", "/clusters")
        assert [c["logged_in"] for c in clusters] == [True, False]

        await login(api, BETA)
        done = await api.wait_state(on_beta["id"], {"completed", "failed"}, timeout=60)
        assert done["state"] == "completed", done
        log = (await api.log(on_beta["id"])).decode()
        assert log.startswith(f"beta {done['info']['slurm_job_id']} in /") and f"/runs/{BETA}/" in log, log

        # one agent per cluster, both alive: starting BETA's did not kill ALPHA's (same work dir)
        agents = {a["kind"]: a for a in (await api.request("GET", "/agents"))["agents"]}
        assert set(agents) == {f"sbatch:{ALPHA}", f"sbatch:{BETA}"}, agents
        assert all(a["state"] == "connected" and alive(a["pid"]) for a in agents.values()), agents
        again = await api.submit(job_on(ALPHA, "echo again"))
        assert (await api.wait_state(again["id"], {"completed", "failed"}, timeout=60))["state"] == "completed"
        assert (await api.job(again["id"]))["agent_id"] == agents[f"sbatch:{ALPHA}"]["id"]

        queue = await api.request("GET", "/queue")
        assert {f"sbatch:{ALPHA}", f"sbatch:{BETA}"} <= set(queue["drivers"]), queue

        # a cluster that does not exist: a clear 400 at submit, a 404 at login
        with pytest.raises(ApiError) as info:
            await api.submit(job_on("gamma", "true"))
        assert info.value.status == 400 and f"no cluster 'gamma': this jobvisor knows '{ALPHA}', '{BETA}'" in str(info.value.body)
        with pytest.raises(ApiError) as info:
            await login(api, "gamma")
        assert info.value.status == 404

        # logging out of BETA closes that login only
        out = await api.request("DELETE", f"/clusters/{BETA}/login")
        assert out["logged_in"] is False
        clusters = await api.request("GET", "/clusters")
        assert [c["logged_in"] for c in clusters] == [True, False]

        env = {**os.environ, "JOBVISOR_URL": server.url, "JOBVISOR_TOKEN": server.token}
        listed = subprocess.run([sys.executable, "-m", "jobvisor", "clusters"], capture_output=True, text=True,
                                env=env, cwd=REPO, timeout=60)
        assert listed.returncode == 0, listed
        lines = listed.stdout.splitlines()
        assert lines[0].split()[:3] == ["CLUSTER", "LOGIN", "NODE"]
        assert lines[1].startswith(f"{ALPHA} *") and f"{slurmbed.user()} (key)" in lines[1], listed.stdout
        assert lines[2].startswith(BETA) and lines[2].rstrip().endswith("no"), listed.stdout
    finally:
        await api.close()
