"""The orchestrator routes with the real supervisor in this process, where its commits can be
counted: a mass cancel is one batch. (tests/integration/test_orchestrator.py drives the same
routes against `jobvisor up` in a subprocess.)"""

from __future__ import annotations

from jobvisor.ids import UserId
from jobvisor.protocol.job_requests import JobSpec
from real_env import start_real_env


async def test_clearing_10000_queued_jobs_is_one_commit(tmp_path):
    real = await start_real_env(tmp_path, JOBVISOR_LOCAL_CPUS="1", JOBVISOR_SUPERVISOR_PREFETCH="0")
    core = real.supervisor.core
    try:
        running = await real.submit(params={"argv": ["sleep", "60"]})
        await real.wait_state(running["id"], "running")
        jobs = await core.submit(UserId("alice"), [JobSpec("shell", {"argv": ["true"]})] * 10_000)
        await core.store.committed()
        before = core.store.commits

        status, body, _ = await real.call("POST", "/queue/clear")
        assert status == 200 and body == {"user": "alice", "canceled": 10_000}
        assert core.store.commits - before <= 2  # the cancels' batch (and at most one commit racing it)
        assert all(job.state == "canceled" for job in jobs)
        status, page, _ = await real.call("GET", "/jobs?state=canceled&limit=1000")
        assert len(page["jobs"]) == 1000 and page["jobs"][0]["reason"] == "canceled by user (queue_clear)"
        assert (await real.wait_state(running["id"], "running"))["state"] == "running"
    finally:
        await real.close()


async def test_the_gateway_refuses_admin_routes_before_asking(tmp_path):
    real = await start_real_env(tmp_path)
    try:
        for path in ("/admin/cancel_all", "/admin/shutdown", "/queue/clear?user=bob"):
            sent = len(real.requests)
            status, body, _ = await real.call("POST", path, user="alice")
            assert status == 403 and "admins only" in body["detail"], body
            assert len(real.requests) == sent  # no op reached the supervisor
        assert not real.supervisor.core.stop_requested.is_set()
        sent = len(real.requests)
        status, body, _ = await real.call("POST", "/queue/clear?usr=bob", user="root")  # a typo clears nothing
        assert status == 400 and body["field"] == "usr" and len(real.requests) == sent, body
    finally:
        await real.close()


async def test_timer_requests_are_checked_field_by_field(tmp_path):
    real = await start_real_env(tmp_path)
    try:
        cases = [
            ({"workflow_id": "w1"}, "at"),
            ({"workflow_id": "w1", "at": "2030-01-01T00:00:00Z", "every": 5}, "every"),
            ({"at": "2030-01-01T00:00:00Z"}, "workflow_id"),
            ({"workflow_id": "w1", "cron": "* 25 * * *"}, "cron"),
            ({"workflow_id": "w1", "cron": "* * *"}, "cron"),
            ({"workflow_id": "w1", "every": "1x"}, "every"),
            ({"workflow_id": "w1", "every": True}, "every"),
            ({"workflow_id": "w1", "at": "soon"}, "at"),
            ({"workflow_id": "w1", "every": 5, "color": "red"}, "color"),
            ([], "body"),
        ]
        for body, field in cases:
            status, problem, _ = await real.call("POST", "/timers", json=body)
            assert (status, problem.get("field")) == (400, field), (body, problem)
        status, problem, _ = await real.call("POST", "/timers", json={"workflow_id": "w1", "cron": "* 25 * * *"})
        assert "hour field (2nd) has 25" in problem["detail"]
        status, problem, _ = await real.call("POST", "/timers", json={"workflow_id": "wnope", "every": "1h"})
        assert (status, problem["field"]) == (404, "workflow_id")
        assert (await real.call("GET", "/timers"))[1] == {"timers": []}
        assert (await real.call("DELETE", "/timers/t0000000000000000000"))[0] == 404
    finally:
        await real.close()
