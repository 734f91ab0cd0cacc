"""Every time the API answers is ISO 8601 UTC (jobs, their history, files, agents, status), and
`GET /jobs` finds a job by its name or by a prefix of its id. Against the real supervisor and
real agents."""

from __future__ import annotations

import re
import time

import pytest

from jobvisor.isotime import unix_of

pytestmark = pytest.mark.integration

ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def assert_recent_iso(value: object, since: float) -> None:
    assert isinstance(value, str) and ISO_UTC.match(value), value
    assert since - 1.0 <= unix_of(value) <= time.time() + 1.0, value


async def test_every_time_is_iso_8601_utc(real):
    since = time.time()
    job = await real.submit(params={"argv": ["sh", "-c", "echo hi > out.txt"]})
    done = await real.wait_state(job["id"], "completed")
    for key in ("created_at", "started_at", "finished_at"):
        assert_recent_iso(done[key], since)
    assert [h["state"] for h in done["history"]] == ["queued", "starting", "running", "completed"]
    for entry in done["history"]:
        assert_recent_iso(entry["at"], since)
    stamps = [unix_of(h["at"]) for h in done["history"]]
    assert stamps == sorted(stamps)

    status, listing, _ = await real.call("GET", f"/jobs/{job['id']}/files")
    assert status == 200
    out = next(f for f in listing["files"] if f["path"] == "out.txt")
    assert_recent_iso(out["mtime"], since)

    status, agents, _ = await real.call("GET", "/agents")
    assert status == 200 and agents["agents"]
    for agent in agents["agents"]:
        assert_recent_iso(agent["connected_at"], since)

    status, body, _ = await real.call("GET", "/status", user=None)
    assert status == 200 and isinstance(body["uptime"], float)
    assert_recent_iso(body["started_at"], since - 60)


async def test_jobs_by_name_and_by_id_prefix(real):
    first = await real.submit(name="alpha")
    second = await real.submit(name="alpha")
    other = await real.submit(name="beta")
    theirs = await real.submit(user="bob", name="alpha")

    status, page, _ = await real.call("GET", "/jobs", params={"name": "alpha"})
    assert status == 200
    assert [j["id"] for j in page["jobs"]] == [second["id"], first["id"]]  # not bob's
    status, page, _ = await real.call("GET", "/jobs", "root", params={"name": "alpha"})
    assert {j["id"] for j in page["jobs"]} == {first["id"], second["id"], theirs["id"]}  # an admin's view

    status, page, _ = await real.call("GET", "/jobs", params={"id_prefix": other["id"]})
    assert [j["id"] for j in page["jobs"]] == [other["id"]]
    status, page, _ = await real.call("GET", "/jobs", params={"id_prefix": other["id"][:-1]})
    assert other["id"] in [j["id"] for j in page["jobs"]]
    assert all(j["id"].startswith(other["id"][:-1]) for j in page["jobs"])
    status, page, _ = await real.call("GET", "/jobs", params={"id_prefix": "j", "name": "beta"})
    assert [j["id"] for j in page["jobs"]] == [other["id"]]
    status, page, _ = await real.call("GET", "/jobs", params={"id_prefix": "x"})
    assert status == 200 and page["jobs"] == []

    status, body, _ = await real.call("GET", "/jobs", params={"id_prefix": "j%"})
    assert status == 400 and body["field"] == "id_prefix"
