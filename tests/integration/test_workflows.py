"""Workflows end to end on the local driver: a real `up` (SQLite and PostgreSQL), real agents
and jobs, driven through the HTTP routes /workflows*."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from api_gateway.openapi import build_openapi
from tests.harness import Api, ApiError
from tests.integration.test_local_end_to_end import _response_schema, assert_fits
from tests.integration.workflow_api import by_name, publish, result_script, shell, wait_workflow

pytestmark = pytest.mark.integration


async def test_chain_runs_in_order_and_each_step_sees_its_dependency_done(api):
    jobs = [shell("s0", "date +%s.%N > t")]
    for k in range(1, 5):
        jobs.append(shell(f"s{k}", "date +%s.%N > t", after=[f"s{k - 1}"]))
    wf = await publish(api, {"name": "chain", "jobs": jobs})
    assert wf["state"] == "running" and wf["run"] == 1 and wf["version"] == 1 and wf["jobs_total"] == 5
    done = await wait_workflow(api, wf["id"])
    assert done["state"] == "completed", done["reason"]
    assert done["counts"] == {"completed": 5}
    jobs = by_name(done)
    for k in range(1, 5):  # each started after its dependency finished
        assert jobs[f"s{k}"]["started_at"] >= jobs[f"s{k - 1}"]["finished_at"]
    job = await api.job(jobs["s3"]["job_id"])
    assert job["workflow_id"] == wf["id"] and job["workflow_job"] == "s3" and job["workflow_run"] == 1
    history = [h["state"] for h in job["history"]]
    assert history[:2] == ["waiting", "queued"] and history[-1] == "completed"
    assert job["history"][1]["reason"] == "dependencies completed"
    events, since = [], 0
    while True:  # the history of workflow events, as the API pages it
        page = await api.request("GET", "/events", params={"format": "json", "since": str(since), "limit": "1000"})
        events += [e for e in page["events"] if e["kind"] == "workflow" and e["workflow_id"] == wf["id"]]
        if not page["next"]:
            break
        since = page["next"]
    assert [e["data"]["state"] for e in events] == ["draft", "running", "completed"]
    assert events[-1]["data"]["counts"] == {"completed": 5} and events[-1]["owner"] == "admin"
    doc = build_openapi()
    assert_fits(doc, _response_schema(doc, "/workflows/{id}", "get", "200"), done)
    assert_fits(doc, _response_schema(doc, "/jobs/{id}", "get", "200"), job)


async def test_fan_out_fan_in_with_refs(api):
    n = 12
    document = {"name": "fan", "jobs": [
        shell("prep", result_script('{"size": 7, "tag": "x"}')),
        *[{"name": f"w{k}", "code": "shell", "params": {"argv": ["echo", {"$ref": "prep.result.tag"}, str(k)]}}
          for k in range(n)],
        shell("sum", "true", after=[f"w{k}" for k in range(n)]),
    ]}
    wf = await publish(api, document)
    done = await wait_workflow(api, wf["id"])
    assert done["state"] == "completed", (done["reason"], [(j["name"], j["reason"]) for j in done["jobs"]])
    jobs = by_name(done)
    w3 = await api.job(jobs["w3"]["job_id"])
    assert w3["params"]["argv"] == ["echo", "x", "3"]  # the $ref, resolved at release
    assert await api.log(jobs["w3"]["job_id"]) == b"x 3\n"
    assert jobs["sum"]["started_at"] is not None, (done, await api.job(jobs["sum"]["job_id"]))
    assert jobs["sum"]["started_at"] >= max(jobs[f"w{k}"]["finished_at"] for k in range(n))
    agents = (await api.request("GET", "/agents"))["agents"]
    assert len([a for a in agents if a["kind"] == "local"]) == 1  # one agent ran the whole workflow


async def test_files_flow_from_producers_to_their_dependents(api):
    n = 6
    document = {"name": "files", "jobs": [
        shell("prep", "echo mesh-data > mesh.txt", outputs=["mesh.txt"]),
        *[shell(f"w{k}", f"cat in.txt > out.txt && echo {k} >> out.txt",
                inputs=[{"job": "prep", "path": "mesh.txt", "dest": "in.txt"}], outputs=["out.txt"]) for k in range(n)],
        shell("sum", "cat parts/out*.txt > all.txt",
              inputs=[{"job": f"w{k}", "path": "out.txt", "dest": f"parts/out{k}.txt"} for k in range(n)]),
    ]}
    done = await wait_workflow(api, (await publish(api, document))["id"])
    assert done["state"] == "completed", [(j["name"], j["state"], j["reason"]) for j in done["jobs"]]
    text = (await api.request("GET", f"/jobs/{by_name(done)['sum']['job_id']}/files/all.txt")).decode()
    assert text.splitlines() == [line for k in range(n) for line in ("mesh-data", str(k))]
    # a resubmit of a dependent, with other params, places the same file of its producer
    w2 = by_name(done)["w2"]["job_id"]
    again = await api.request("POST", f"/jobs/{w2}/resubmit", json={"params": {"script": "cat in.txt; echo again"}})
    assert (await api.wait_state(again["id"], {"completed", "failed"}))["state"] == "completed"
    assert await api.log(again["id"]) == b"mesh-data\nagain\n"
    # a promised output that was never written fails its dependent, naming the file
    broken = {"name": "broken", "jobs": [shell("p", "true", outputs=["never.txt"]),
                                         shell("q", "true", inputs=[{"job": "p", "path": "never.txt"}])]}
    done = await wait_workflow(api, (await publish(api, broken))["id"])
    q = by_name(done)["q"]
    assert q["state"] == "failed" and "never.txt" in q["reason"], q


async def test_failure_cancels_dependents_and_independent_branches_go_on(api):
    document = {"name": "branches", "jobs": [
        shell("bad", "exit 3"),
        shell("after-bad", "true", after=["bad"]),
        shell("after-after", "true", after=["after-bad"]),
        shell("good", "true"),
        shell("after-good", "true", after=["good"]),
    ]}
    wf = await publish(api, document)
    done = await wait_workflow(api, wf["id"])
    jobs = by_name(done)
    assert done["state"] == "failed"
    assert jobs["bad"]["state"] == "failed"
    assert jobs["after-bad"]["state"] == "canceled" and jobs["after-bad"]["reason"] == "dependency bad failed"
    assert jobs["after-after"]["state"] == "canceled" and jobs["after-after"]["reason"] == "dependency bad failed"
    assert jobs["good"]["state"] == jobs["after-good"]["state"] == "completed"
    assert done["counts"] == {"failed": 1, "canceled": 2, "completed": 2}
    continued = await publish(api, {**document, "name": "branches-continue", "on_failure": "continue"})
    done = await wait_workflow(api, continued["id"])
    jobs = by_name(done)
    assert done["state"] == "failed" and jobs["after-after"]["state"] == "completed"
    assert done["counts"] == {"failed": 1, "completed": 4}


async def test_missing_ref_fails_the_dependent_naming_the_ref(api):
    document = {"name": "refs", "jobs": [
        shell("a", result_script('{"size": 1}')),
        {"name": "b", "code": "shell", "params": {"argv": ["echo", {"$ref": "a.result.missing"}]}},
        shell("c", "true", after=["b"]),
        {"name": "d", "code": "shell", "params": {"argv": ["echo", {"$ref": "a.result.size"}]}},
    ]}
    done = await wait_workflow(api, (await publish(api, document))["id"])
    jobs = by_name(done)
    assert jobs["b"]["state"] == "failed" and "a.result.missing" in jobs["b"]["reason"]
    assert jobs["c"]["reason"] == "dependency b failed"
    # the value is there, but not what the code takes: checked at release, naming the field
    assert jobs["d"]["state"] == "failed" and jobs["d"]["reason"].startswith("params.argv")


async def test_a_finished_workflows_view_shows_every_job_finished(api):
    """The workflow's state and its jobs' are read at one moment: a view that says the workflow
    completed never shows one of its jobs still running (many small workflows at once)."""
    async def one(k: int) -> dict:
        jobs = [shell("a", "true"), *[shell(f"b{i}", "true", after=["a"]) for i in range(4)],
                shell("c", "true", after=[f"b{i}" for i in range(4)])]
        return await wait_workflow(api, (await publish(api, {"name": f"many-{k}", "jobs": jobs}))["id"])

    for view in await asyncio.gather(*(one(k) for k in range(12))):
        assert view["state"] == "completed", view["reason"]
        assert [(j["state"], j["started_at"] is None, j["finished_at"] is None) for j in view["jobs"]] == \
            [("completed", False, False)] * 6, view["jobs"]


async def test_cancel_delete_versions_and_history(api):
    document = {"name": "slow", "jobs": [shell("first", "sleep 30"), shell("second", "true", after=["first"])]}
    wf = await publish(api, document, message="the first")
    running = await api.request("GET", f"/workflows/{wf['id']}/status")
    assert running["state"] == "running" and running["counts"] == {"waiting": 1, **running["counts"]}
    with pytest.raises(ApiError) as info:
        await api.request("POST", f"/workflows/{wf['id']}/execute")
    assert info.value.status == 409
    with pytest.raises(ApiError) as info:
        await api.request("DELETE", f"/workflows/{wf['id']}")
    assert info.value.status == 409
    with pytest.raises(ApiError) as info:
        await publish(api, document, execute=False)
    assert info.value.status == 409
    canceled = await api.request("POST", f"/workflows/{wf['id']}/cancel")
    assert canceled["id"] == wf["id"]
    done = await wait_workflow(api, wf["id"])
    assert done["state"] == "canceled" and {j["state"] for j in done["jobs"]} == {"canceled"}
    v2 = await publish(api, {**document, "on_failure": "continue"}, execute=False, message="the second")
    assert v2["id"] == wf["id"] and v2["version"] == 2 and v2["state"] == "draft" and v2["on_failure"] == "continue"
    history = (await api.request("GET", f"/workflows/{wf['id']}/history"))["versions"]
    assert [(v["version"], v["message"], v["author"]) for v in history] == [(1, "the first", "admin"), (2, "the second", "admin")]
    assert all(len(v["sha256"]) == 64 for v in history) and history[0]["sha256"] != history[1]["sha256"]
    again = await api.request("POST", f"/workflows/{wf['id']}/execute")
    assert again["run"] == 2 and again["state"] == "running"
    deleted = await api.request("DELETE", f"/workflows/{wf['id']}", params={"force": "true"})
    assert deleted == {"id": wf["id"], "deleted": True}
    with pytest.raises(ApiError) as info:
        await api.request("GET", f"/workflows/{wf['id']}")
    assert info.value.status == 404
    listed = (await api.request("GET", "/workflows"))["workflows"]
    assert wf["id"] not in {w["id"] for w in listed}


async def test_validation_errors_name_the_field(api):
    async def refused(document, content_type: str = "application/json") -> dict:
        body = document if isinstance(document, bytes) else None
        kw = {"data": body, "headers": {"Content-Type": content_type}} if body is not None else {"json": document}
        with pytest.raises(ApiError) as info:
            await api.request("POST", "/workflows", **kw)
        assert info.value.status == 400
        return info.value.body

    cycle = await refused({"name": "c", "jobs": [shell("a", "true", after=["c"]), shell("b", "true", after=["a"]),
                                                 shell("c", "true", after=["b"])]})
    assert "b -> c -> a -> b" in cycle["detail"] and cycle["field"].startswith("jobs[")
    assert (await refused({"name": "u", "jobs": [shell("a", "true", after=["nope"])]}))["field"] == "jobs[0].after[0]"
    assert (await refused({"name": "d", "jobs": [shell("a", "true"), shell("a", "true")]}))["field"] == "jobs[1].name"
    missing_output = {"name": "o", "jobs": [shell("a", "true"), shell("b", "true", inputs=[{"job": "a", "path": "x"}])]}
    assert (await refused(missing_output))["field"] == "jobs[1].inputs[0].path"
    no_driver = {"name": "r", "jobs": [shell("a", "true"), shell("b", "true", resources={"cpus": 100000})]}
    assert (await refused(no_driver))["field"] == "jobs[1].resources.cpus"
    no_cluster = {"name": "k", "jobs": [shell("a", "true", driver="sbatch", resources={"cluster": "nowhere"})]}
    assert (await refused(no_cluster))["field"].startswith("jobs[0].")
    assert (await refused(b"name: [", "application/yaml"))["field"] == "body"
    for params, field in (({"execute": "yes"}, "execute"), ({"exec": "1"}, "exec")):
        with pytest.raises(ApiError) as info:
            await api.request("POST", "/workflows", json={"name": "q", "jobs": [shell("a", "true")]}, params=params)
        assert info.value.status == 400 and info.value.body["field"] == field
    yaml_doc = b"name: from-yaml\njobs:\n  - name: a\n    code: shell\n    params: {argv: [\"true\"]}\n"
    made = await api.request("POST", "/workflows", data=yaml_doc, headers={"Content-Type": "application/yaml"})
    assert made["name"] == "from-yaml" and made["state"] == "draft"


async def test_another_users_workflow_is_not_found(server, api):
    wf = await publish(api, {"name": "mine", "jobs": [shell("a", "true")]}, execute=False)
    out = subprocess.run([sys.executable, "-m", "jobvisor", "user", "add", "bob", "--state-dir", str(server.state_dir)],
                         capture_output=True, text=True, timeout=60, check=True)
    bob = Api(server.url, out.stdout.strip().splitlines()[-1])
    try:
        for method, path in [("GET", ""), ("GET", "/status"), ("GET", "/history"), ("POST", "/execute"),
                             ("POST", "/cancel"), ("DELETE", "")]:
            with pytest.raises(ApiError) as info:
                await bob.request(method, f"/workflows/{wf['id']}{path}")
            assert info.value.status == 404, (method, path)
        assert (await bob.request("GET", "/workflows"))["workflows"] == []
        same_name = await publish(bob, {"name": "mine", "jobs": [shell("a", "true")]}, execute=False)
        assert same_name["id"] != wf["id"] and same_name["version"] == 1
        # the admin sees and runs everyone's
        seen = await api.request("GET", f"/workflows/{same_name['id']}")
        assert seen["owner"] == "bob" and {w["owner"] for w in (await api.request("GET", "/workflows"))["workflows"]} >= {"admin", "bob"}
        ran = await api.request("POST", f"/workflows/{same_name['id']}/execute")
        done = await wait_workflow(bob, ran["id"])
        assert done["state"] == "completed" and (await bob.job(done["jobs"][0]["job_id"]))["owner"] == "bob"
    finally:
        await bob.close()


async def test_the_readmes_workflow_runs_as_it_is(api):
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    start = readme.index("```yaml\nname: mesh-study") + len("```yaml\n")
    text = readme[start:readme.index("```", start)]
    wf = await api.request("POST", "/workflows", data=text.encode(), params={"execute": "true"},
                           headers={"Content-Type": "application/yaml"})
    done = await wait_workflow(api, wf["id"])
    assert done["state"] == "completed", [(j["name"], j["state"], j["reason"]) for j in done["jobs"]]
    jobs = by_name(done)
    assert (await api.job(jobs["solve"]["job_id"]))["result"] == (1 + 2 + 64) / 3  # the $ref, resolved
    assert (await api.log(jobs["report"]["job_id"])).strip() == b"64"
