"""One workflow document, with only `driver` (and the cluster) changed, run on a real Docker
engine and on the real Slurm testbed: its dependencies, its `$ref` and its file between jobs
work there as they do locally (tests/integration/test_workflows.py)."""

from __future__ import annotations

import asyncio

import pytest

from tests.contract.backends import BACKENDS, require
from tests.drivers import dockerbed, slurmbed
from tests.harness import Api, JobvisorProcess
from tests.integration.workflow_api import by_name, publish, result_script, wait_workflow

pytestmark = pytest.mark.integration


def document(driver: str, **resources) -> dict:
    """prep -> (a, b) -> report; a takes prep's result by $ref and prep's file as an input."""
    def job(name: str, script: str, **more) -> dict:
        out = {"name": name, "code": "shell", "params": {"script": script}, "driver": driver, **more}
        if resources:
            out["resources"] = dict(resources)
        return out

    return {"name": f"same-on-{driver}", "jobs": [
        job("prep", "echo mesh > mesh.txt && " + result_script('{"size": "7"}'), outputs=["mesh.txt"]),
        {**job("a", ""), "params": {"argv": ["sh", "-c", 'echo "size $0"; cat in.txt', {"$ref": "prep.result.size"}]},
         "inputs": [{"job": "prep", "path": "mesh.txt", "dest": "in.txt"}]},
        job("b", "echo b", after=["prep"]),
        job("report", "echo report", after=["a", "b"]),
    ]}


async def check_run(api: Api, document: dict) -> dict:
    wf = await publish(api, document)
    done = await wait_workflow(api, wf["id"], timeout=180)
    jobs = by_name(done)
    assert done["state"] == "completed", (done["reason"], [(j["name"], j["state"], j["reason"]) for j in done["jobs"]])
    assert await api.log(jobs["a"]["job_id"]) == b"size 7\nmesh\n"
    assert jobs["report"]["started_at"] >= max(jobs["a"]["finished_at"], jobs["b"]["finished_at"])
    assert jobs["a"]["started_at"] >= jobs["prep"]["finished_at"]
    return jobs


async def test_the_document_on_docker(tmp_path):
    require(BACKENDS["docker"])
    server = JobvisorProcess(tmp_path / "state", env=dockerbed.server_env())
    await asyncio.to_thread(server.start)
    api = Api(server.url, server.token)
    try:
        jobs = await check_run(api, document("docker"))
        job = await api.job(jobs["a"]["job_id"])
        assert job["driver"] == "docker" and job["workflow_job"] == "a"
        agents = [a for a in (await api.request("GET", "/agents"))["agents"] if a["kind"] == "docker"]
        assert len(agents) == 1  # the workflow's jobs shared the user's one docker agent
        # across drivers that share no file system: the file goes through the supervisor
        across = document("docker")
        across["name"] = "across"
        across["jobs"][0]["driver"] = "local"
        jobs = await check_run(api, across)
        assert (await api.job(jobs["prep"]["job_id"]))["driver"] == "local"
        fetched = await api.job(jobs["a"]["job_id"])  # kept in the state dir like an upload, until its end
        assert fetched["inputs"] == [{"path": "in.txt", "size": len(b"mesh\n")}], fetched
    finally:
        await api.close()
        server.cleanup()
        dockerbed.remove_containers(server.state_dir)


async def test_the_document_on_slurm(make_server):
    server = make_server()
    api = Api(server.url, server.token)
    try:
        await api.request("POST", f"/clusters/{slurmbed.CLUSTER}/login", json={"username": slurmbed.user(), "method": "key"})
        jobs = await check_run(api, document("sbatch", cluster=slurmbed.CLUSTER))
        job = await api.job(jobs["a"]["job_id"])
        assert job["driver"] == "sbatch" and job["info"].get("slurm_job_id")
    finally:
        await api.close()
