"""A planned stop of a real `jobvisor up` (SIGTERM, as Ctrl-C and POST /admin/shutdown do) and
its restart, on SQLite and on PostgreSQL: the running job is stopped, committed `queued` again
as its next attempt before `up` exits (max_retries 0 notwithstanding), and completes as
attempt 2 after the restart; the jobs queued at the stop (one sent ahead to the agent, one
not) stay queued under attempt 1 and run once."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from jobvisor.states import JobState
from supervisor.logstore import LogStore
from supervisor.store import Store
from tests.harness import REPO, Api, JobvisorProcess

pytestmark = pytest.mark.integration

INTERRUPTED = "interrupted by the supervisor's stop; runs again when it starts"
NOT_STARTED = "queued; the supervisor stopped before its agent started it"  # the one sent ahead


def shell(name: str, script: str) -> dict:
    return {"name": name, "code": "shell", "params": {"script": script}}


@pytest.fixture
def one_slot(tmp_path, database):
    """`up` with one cpu slot and one job sent ahead at most, its SQLite file (if SQLite) where
    the `database` fixture's URL says, so the test can read what was committed."""
    proc = JobvisorProcess(tmp_path, env={**database.env, "JOBVISOR_LOCAL_CPUS": "1", "JOBVISOR_SUPERVISOR_PREFETCH": "1"})
    proc.start()
    yield proc
    proc.cleanup()


async def committed(database, logs: Path, job_ids: list[str]) -> dict:
    """What the database holds for each job (with its history) once `up` has exited."""
    store = Store(database.store_url, LogStore(logs))
    await store.open()
    try:
        return {job_id: (await store.get_job(job_id), await store.transitions_of(job_id)) for job_id in job_ids}
    finally:
        await store.close()


async def test_a_running_job_survives_a_planned_stop_and_queued_ones_stay_queued(one_slot, database, tmp_path):
    server = one_slot
    token = server.token
    ran = tmp_path / "ran"
    api = Api(server.url, token)
    try:
        longrun, ahead, queued = await api.submit([
            shell("longrun", f'echo "longrun $JOBVISOR_ATTEMPT" >> {ran}; [ "$JOBVISOR_ATTEMPT" != 1 ] || sleep 120'),
            shell("ahead", f'echo "ahead $JOBVISOR_ATTEMPT" >> {ran}'),
            shell("queued", f'echo "queued $JOBVISOR_ATTEMPT" >> {ran}'),
        ])
        await api.wait_state(longrun["id"], "running", timeout=60)
    finally:
        await api.close()
    assert server.stop() == 0
    assert not server.agent_pids()

    rows = await committed(database, tmp_path / "read-logs", [longrun["id"], ahead["id"], queued["id"]])
    job, history = rows[longrun["id"]]
    assert (job.state, job.attempt, job.max_retries, job.reason) == (JobState.QUEUED, 2, 0, INTERRUPTED)
    assert [(h["attempt"], h["state"]) for h in history] == [(1, "queued"), (1, "starting"), (1, "running"), (2, "queued")]
    for job_id, reason in ((ahead["id"], NOT_STARTED), (queued["id"], "submitted")):
        job, history = rows[job_id]
        assert (job.state, job.attempt, job.agent_id, job.reason) == (JobState.QUEUED, 1, None, reason)
        assert [(h["attempt"], h["state"]) for h in history] == [(1, "queued")]

    server.restart()
    api = Api(server.url, token)
    try:
        done = {j["id"]: await api.wait_state(j["id"], {"completed", "failed", "canceled", "lost"}, timeout=60)
                for j in (longrun, ahead, queued)}
        again = done[longrun["id"]]
        assert (again["state"], again["attempt"]) == ("completed", 2), again
        assert [(h["attempt"], h["state"]) for h in again["history"]] == [
            (1, "queued"), (1, "starting"), (1, "running"),
            (2, "queued"), (2, "starting"), (2, "running"), (2, "completed")]
        assert again["history"][3]["reason"] == INTERRUPTED
        for job_id in (ahead["id"], queued["id"]):
            assert (done[job_id]["state"], done[job_id]["attempt"]) == ("completed", 1), done[job_id]
        assert sorted(ran.read_text().splitlines()) == ["ahead 1", "longrun 1", "longrun 2", "queued 1"]
    finally:
        await api.close()

    shown = subprocess.run([sys.executable, "-m", "jobvisor", "show", "longrun"], capture_output=True, text=True,
                           cwd=REPO, timeout=60, env={**server.env, "JOBVISOR_URL": server.url,
                                                      "JOBVISOR_TOKEN": token})
    assert shown.returncode == 0, shown.stderr
    (line,) = [line for line in shown.stdout.splitlines() if INTERRUPTED in line]
    assert "#2" in line and "queued" in line and "canceled" not in shown.stdout, shown.stdout


async def test_ctrl_c_is_the_same_planned_stop(tmp_path):
    """SIGINT (Ctrl-C in the terminal running `up`; its agents, in sessions of their own, do not
    get it) stops as SIGTERM does: the running job runs again as attempt 2 after the restart."""
    server = JobvisorProcess(tmp_path / "state")
    server.start()
    token = server.token
    api = Api(server.url, token)
    try:
        job = await api.submit(shell("sim", 'echo "attempt $JOBVISOR_ATTEMPT"; [ "$JOBVISOR_ATTEMPT" != 1 ] || sleep 120'))
        await api.wait_state(job["id"], "running", timeout=60)
        server.proc.send_signal(signal.SIGINT)
        assert server.stop() == 0 and "jobvisor stopped" in server.output
        server.restart()
        await api.close()
        api = Api(server.url, token)
        done = await api.wait_state(job["id"], {"completed", "failed", "canceled", "lost"}, timeout=60)
        assert (done["state"], done["attempt"]) == ("completed", 2), done
        assert (2, "queued", INTERRUPTED) in [(h["attempt"], h["state"], h["reason"]) for h in done["history"]]
        assert await api.log(job["id"]) == b"attempt 2\n"
    finally:
        await api.close()
        server.cleanup()
