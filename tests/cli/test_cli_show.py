"""`jobvisor show`: a job's fields and its history for a person to read: local times, memory
as 2G, walltime as 01:30:00, the history as a timeline.
The end-to-end test runs the CLI against the real gateway, supervisor and agent."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

from cli_env import cli_environ, run_cli
from jobvisor.cli.listing import format_history, format_job

EST = timezone(timedelta(hours=-5))
HISTORY = [
    {"attempt": 1, "state": "queued", "reason": "submitted", "at": "2026-12-05T06:01:02.500Z"},
    {"attempt": 1, "state": "running", "reason": "running", "at": "2026-12-05T06:01:03.000Z"},
    {"attempt": 1, "state": "lost", "reason": "agent lost", "at": "2026-12-05T06:05:08.000Z"},
    {"attempt": 2, "state": "queued", "reason": "retrying after: agent lost", "at": "2026-12-05T06:05:08.012Z"},
]


def test_history_is_a_timeline_in_local_time():
    assert format_history(HISTORY, EST) == [
        "  01:01:02.500           #1  queued   submitted",
        "  01:01:03.000   +0.5 s  #1  running  running",
        "  01:05:08.000  +4m 05s  #1  lost     agent lost",
        "  01:05:08.012   +12 ms  #2  queued   retrying after: agent lost",
    ]
    across_days = [HISTORY[0], {**HISTORY[1], "at": "2026-12-06T06:01:03Z"}]
    assert format_history(across_days, EST)[1].startswith("  2026-12-06 01:01:03.000-05:00  +1d 00h  #1  running")
    assert format_history([{"state": "queued"}], EST) == ["  -    #-  queued"]


def test_show_is_for_a_person():
    shown = format_job({
        "id": "j1", "name": "", "state": "running", "reason": "running", "code": "shell",
        "params": {"argv": ["sh", "-c", "sleep 9"]}, "exit_code": None, "progress": 0.25, "progress_message": "warm",
        "resources": {"cpus": 2, "memory": 2147483648, "walltime": 5400.0, "gpus": 0, "nodes": 1},
        "created_at": "2026-12-05T06:01:02.5Z", "started_at": "2026-12-05T06:01:03Z", "finished_at": None,
        "queue_position": None, "history": HISTORY[:2],
    }, EST, now=datetime(2026, 12, 5, 6, 2, 3, tzinfo=timezone.utc)).splitlines()
    assert "command      sh -c 'sleep 9'" in shown
    assert "resources    cpus 2, memory 2G, walltime 01:30:00" in shown
    assert "progress     25% warm" in shown
    assert "created_at   2026-12-05 01:01:02.500-05:00" in shown and "started_at   2026-12-05 01:01:03.000-05:00" in shown
    assert "finished_at  -" in shown and "run time     1m 00s (so far)" in shown
    assert not any(line.startswith(("params", "queue_position")) for line in shown)  # said by command; none
    assert shown[-3] == "history" and "2147483648" not in "\n".join(shown)
    assert format_job({"id": "j1", "history": []}, EST).splitlines()[-1] == "history  -"
    extras = format_job({"id": "j1", "env": {"B": "two words", "A": "1"}, "retry_on": ["failed", "lost"],
                         "inputs": [{"path": "data/mesh.txt", "size": 8}, {"path": "big.h5", "size": 3 << 30}]}).splitlines()
    assert "env       A=1 'B=two words'" in extras and "retry_on  failed, lost" in extras
    assert "inputs    data/mesh.txt (8B), big.h5 (3G)" in extras
    element = format_job({"id": "j2", "name": "sweep", "array_id": "j1", "array_index": 3, "array_cap": 2}).splitlines()
    assert element[:3] == ["id     j2", "name   sweep", "array  element 3 of j1, at most 2 at once"]
    used = format_job({"id": "j1", "info": {"pid": 7, "max_rss": 3 << 29, "cpu_seconds": 75.5}}).splitlines()
    assert "usage  max memory 1.5G, cpu time 1m 15s" in used


async def test_show_of_a_real_job(real, tmp_path):
    job = await real.submit(params={"argv": ["true"]}, resources={"memory": "2G", "walltime": "01:30:00"})
    await real.wait_state(job["id"], "completed")
    env = cli_environ(tmp_path / "cli-state", JOBVISOR_URL=real.gateway.url, JOBVISOR_TOKEN=real.tokens["alice"], TZ="EST+5")
    shown = await run_cli("show", job["id"][:-3], env=env)  # a prefix names it
    assert shown.rc == 0, shown.err
    lines = shown.out.splitlines()
    history = lines[lines.index("history") + 1:]
    states = [re.search(r"#1  (\w+)", line).group(1) for line in history]
    assert states == ["queued", "starting", "running", "completed"]
    assert all(re.fullmatch(r"  \d\d:\d\d:\d\d\.\d{3} +(\+\S+ \S+)? +#1  \w+ +\S.*", line) for line in history), history
    assert history[-1].endswith("exit code 0")
    stamp = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}-05:00"
    assert re.fullmatch(rf"created_at +{stamp}", next(line for line in lines if line.startswith("created_at")))
    assert "resources    cpus 1, memory 2G, walltime 01:30:00" in lines
    assert re.search(r"^run time +\d+(\.\d)? (ms|s)$", shown.out, re.MULTILINE), shown.out
    as_json = await run_cli("show", "--json", job["id"], env=env)
    assert '"memory": 2147483648' in as_json.out and '"at": "20' in as_json.out  # the API's exact values
