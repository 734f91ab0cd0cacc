"""A state dir made before migrations (tests/fixtures/state-before-migrations) under today's
`jobvisor up`: both databases are stamped and upgraded in place, every job is still there
with its state and output, the old token still works, and the jobs left queued or running by
the crash that ended the old `up` are settled as after any restart. A state dir that a newer
jobvisor upgraded is refused."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from api_gateway.auth_store import SCHEMA as GATEWAY_SCHEMA
from supervisor.migrations import SCHEMA as JOBS_SCHEMA
from tests.harness import REPO, Api, ApiError, JobvisorProcess

pytestmark = pytest.mark.integration

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "state-before-migrations"
ALICE_TOKEN = "jv_oV9Mik86ppPNHzi_bLe_FzwGnO0BBqFzZdoxOHWGOog"  # alice's token in gateway.sql (a test fixture's)


def state_dir_before_migrations(state: Path) -> None:
    """The fixture's dumps loaded into SQLite files, as the old jobvisor left them."""
    state.mkdir(parents=True)
    for name in ("jobvisor", "gateway"):
        db = sqlite3.connect(state / f"{name}.sqlite")
        try:
            db.executescript((FIXTURE / f"{name}.sql").read_text())
        finally:
            db.close()
    shutil.copytree(FIXTURE / "logs", state / "logs")


def revisions(path: Path, table: str) -> list[tuple[str]]:
    db = sqlite3.connect(path)
    try:
        return db.execute(f"SELECT version_num FROM {table}").fetchall()
    finally:
        db.close()


async def test_up_upgrades_a_state_dir_made_before_migrations(tmp_path):
    state = tmp_path / "state"
    state_dir_before_migrations(state)
    server = JobvisorProcess(state, env={"JOBVISOR_SUPERVISOR_RECONNECT_GRACE": "1"}).start()
    alice = Api(server.url, ALICE_TOKEN)
    try:
        assert server.token is None  # users exist: no new admin
        jobs = {j["name"]: j for j in (await alice.request("GET", "/jobs"))["jobs"]}
        assert set(jobs) == {"done", "failed", "python", "canceled", "running", "queued0", "queued1"}
        assert (jobs["done"]["state"], jobs["failed"]["exit_code"], jobs["canceled"]["state"]) == ("completed", 3, "canceled")
        assert jobs["python"]["result"] == '{"answer": 42}'
        assert await alice.log(jobs["done"]["id"]) == b"done\n"
        done = await alice.job(jobs["done"]["id"])
        assert [h["state"] for h in done["history"]] == ["queued", "starting", "running", "completed"]
        # the agent of the running job died with the old `up`: lost after the reconnect grace,
        # and the jobs queued behind it run
        lost = await alice.wait_state(jobs["running"]["id"], "lost")
        assert "reconnect" in lost["reason"]
        for name in ("queued0", "queued1"):
            assert (await alice.wait_state(jobs[name]["id"], "completed"))["exit_code"] == 0
        new = await alice.submit({"code": "shell", "params": {"argv": ["true"]}})
        assert (await alice.wait_state(new["id"], "completed"))["exit_code"] == 0
        stranger = Api(server.url, "jv_not_a_token")
        try:
            with pytest.raises(ApiError) as refused:
                await stranger.request("GET", "/jobs")
            assert refused.value.status == 401
        finally:
            await stranger.close()
    finally:
        await alice.close()
        server.cleanup()
    assert revisions(state / "jobvisor.sqlite", JOBS_SCHEMA.version_table) == [(JOBS_SCHEMA.head,)]
    assert revisions(state / "gateway.sqlite", GATEWAY_SCHEMA.version_table) == [(GATEWAY_SCHEMA.head,)]


def test_up_refuses_a_state_dir_that_a_newer_jobvisor_upgraded(tmp_path):
    state = tmp_path / "state"
    state_dir_before_migrations(state)
    server = JobvisorProcess(state)
    db = sqlite3.connect(state / "jobvisor.sqlite")
    try:  # what a newer jobvisor leaves: a revision this one does not know
        db.execute(f"CREATE TABLE {JOBS_SCHEMA.version_table} (version_num VARCHAR(32) NOT NULL PRIMARY KEY)")
        db.execute(f"INSERT INTO {JOBS_SCHEMA.version_table} VALUES ('0042')")
        db.commit()
    finally:
        db.close()
    out = subprocess.run(
        [sys.executable, "-m", "jobvisor", "up", "--state-dir", str(state), "--port", str(server.port),
         "--supervisor-port", str(server.supervisor_port)],
        capture_output=True, text=True, timeout=60, env=server.env, cwd=REPO,
    )
    assert out.returncode == 1, out.stderr[-2000:]
    assert "jobvisor: the jobs database is at revision 0042" in out.stderr and "newer jobvisor" in out.stderr
    assert revisions(state / "jobvisor.sqlite", JOBS_SCHEMA.version_table) == [("0042",)]
