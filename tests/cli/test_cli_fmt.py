"""The CLI's formatting for a person (jobvisor.cli.fmt) and the pure parts of the commands
built on it: list's rows, wait's exit status, get's target, analysis's arguments."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from jobvisor.cli import fmt
from jobvisor.cli.errors import CliError
from jobvisor.cli.jobs import output_path
from jobvisor.cli.keyvalues import parse_key_values
from jobvisor.cli.listing import detail, job_label, job_rows, render_list
from jobvisor.cli.waiting import WaitStatus, end_line, wait_status

EST = timezone(timedelta(hours=-5))
NOW = datetime(2026, 12, 5, 10, 0, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize("seconds, text", [
    (None, "-"), (0, "0 ms"), (0.014, "14 ms"), (0.4, "0.4 s"), (3.24, "3.2 s"), (42.9, "42 s"),
    (245, "4m 05s"), (3840, "1h 04m"), (86400 * 2 + 3 * 3600 + 59, "2d 03h"), (-1, "0 ms"),
])
def test_duration(seconds, text):
    assert fmt.duration(seconds) == text


@pytest.mark.parametrize("size, text", [
    (None, "-"), (100, "100B"), (1024, "1K"), (512 * 1024**2, "512M"), (2 * 1024**3, "2G"),
    (int(1.5 * 1024**3), "1.5G"), (2147483648, "2G"), (3 * 1024**4, "3T"), (int(1.25 * 1024**2), "1.25M"),
])
def test_memory_in_the_units_submit_takes(size, text):
    assert fmt.memory(size) == text


def test_walltime_percent_and_resources():
    assert fmt.walltime(5400.0) == "01:30:00" and fmt.walltime(90.0) == "00:01:30" and fmt.walltime(None) == "-"
    assert fmt.walltime(36 * 3600) == "36:00:00"
    assert fmt.percent(0.444) == "44%" and fmt.percent(1.5) == "100%" and fmt.percent(None) == "-"
    assert fmt.resources({"cpus": 2, "memory": 2147483648, "gpus": 0, "walltime": 5400.0, "nodes": 1}) == (
        "cpus 2, memory 2G, walltime 01:30:00")
    assert fmt.resources({"gpus": 1, "partition": "short"}) == "gpus 1, partition short"
    assert fmt.resources({}) == "-"
    # a cluster job's extra options are a map (a set of defaults could not hold it)
    assert fmt.resources({"cluster": "c1", "extra": {"partition": "debug", "qos": "low"}}) == (
        "cluster c1, extra partition=debug qos=low")


def test_times_in_local_time():
    assert fmt.local_time("2026-12-05T06:01:02.500Z", EST) == "2026-12-05 01:01:02.500-05:00"
    assert fmt.local_time("2026-12-05T06:01:02", EST) == "2026-12-05 01:01:02.000-05:00"  # no offset: UTC
    assert fmt.local_time(1796450462.5, EST) == "2026-12-05 01:01:02.500-05:00"  # an older server's Unix time
    assert fmt.local_time("not a time", EST) == "not a time"
    assert fmt.short_time("2026-12-05T09:30:26Z", timezone.utc, NOW) == "09:30:26"
    assert fmt.short_time("2026-12-04T09:30:26Z", timezone.utc, NOW) == "Dec 04 09:30"
    assert fmt.short_time("2025-12-04T09:30:26Z", timezone.utc, NOW) == "2025-12-04"
    assert fmt.short_time(None) == "-"


def test_run_time_is_to_the_end_or_to_now():
    assert fmt.run_time({"started_at": "2026-12-05T09:00:00Z", "finished_at": "2026-12-05T09:00:03.2Z"}) == 3.2
    assert fmt.run_time({"started_at": "2026-12-05T09:59:00Z", "finished_at": None}, NOW) == 60.0
    assert fmt.run_time({"started_at": None}) is None


def test_command_summary_and_clip():
    assert fmt.command_summary({"code": "shell", "params": {"argv": ["sh", "-c", "echo $X; exit 2"]}}) == (
        "sh -c 'echo $X; exit 2'")
    assert fmt.command_summary({"code": "shell", "params": {"script": "make\nmake test"}}) == "make ..."
    assert fmt.command_summary({"code": "python", "params": {"entry": "sim:run", "args": {}}}) == "python sim:run"
    assert fmt.command_summary({"code": "demo", "params": {"steps": 3}}) == "demo"
    assert fmt.clip("a  b\nc", 10) == "a b c" and fmt.clip("abcdefghij", 5) == "abcd…"


def job(**fields):
    return {"id": "j1", "owner": "alice", "name": "", "code": "shell", "params": {"argv": ["sleep", "9"]},
            "state": "queued", "reason": "submitted", "exit_code": None, "progress": None,
            "queue_position": None, "created_at": "2026-12-05T09:30:00Z", "started_at": None,
            "finished_at": None, **fields}


def test_list_rows_say_what_runs_how_long_and_how_it_ended():
    jobs = [
        job(id="j3", state="failed", reason="ValueError: bad input", exit_code=1,
            started_at="2026-12-05T09:30:01Z", finished_at="2026-12-05T09:34:06Z"),
        job(id="j2", name="sim", state="running", progress=0.5, started_at="2026-12-05T09:00:00Z"),
        job(id="j1", queue_position=3),
    ]
    headers, rows = job_rows(jobs, owners=False, tz=timezone.utc, now=NOW)
    assert headers == ["ID", "NAME", "STATE", "PROGRESS", "SUBMITTED", "RUN TIME", "EXIT/REASON"]
    assert rows == [
        ["j3", "sleep 9", "failed", "", "09:30:00", "4m 05s", "exit code 1, ValueError: bad input"],
        ["j2", "sim", "running", "50%", "09:30:00", "1h 00m", ""],
        ["j1", "sleep 9", "queued", "", "09:30:00", "", "#3 in queue"],
    ]
    assert job_label(job(name="sweep", array_index=3)) == "sweep[3]"  # an array element, as Slurm's %a
    assert job_label(job(name="x" * 40, array_index=12)) == "x" * 27 + "…[12]"  # the index is never cut
    assert detail(job(state="failed", reason="exit code 2", exit_code=2)) == "exit code 2"  # said once
    assert detail(job(state="completed", reason="exit code 0", exit_code=0)) == "exit code 0"
    assert detail(job(state="queued", reason="login required")) == "login required"
    assert detail(job(state="queued", reason="submitted: element of array j0", queue_position=2)) == "#2 in queue"
    assert detail(job(state="queued", reason="submitted: element of array j0", array_cap=2)) == (
        "waits: at most 2 of its array at once")
    assert detail(job(state="failed", reason="out of memory", exit_code=-9)) == "killed by SIGKILL, out of memory"
    assert detail(job(state="failed", reason="killed by SIGKILL", exit_code=-9)) == "killed by SIGKILL"
    assert detail(job(state="canceled", reason="canceled by user", exit_code=-15)) == "canceled by user"
    assert detail(job(state="timed_out", reason="walltime 00:00:02 exceeded", exit_code=-15)) == (
        "walltime 00:00:02 exceeded")


def test_an_arrays_queued_elements_share_a_row_as_squeue_shows_them():
    jobs = [job(id=f"j{i}", name="sweep", array_id="j0", array_index=i, array_cap=2, state="queued")
            for i in (9, 8, 7, 6, 5, 3, 2)]
    jobs.insert(0, job(id="j9x", name="sweep", array_id="j0", array_index=1, state="running",
                       started_at="2026-12-05T09:30:01Z"))
    headers, rows = job_rows(jobs, owners=False, tz=timezone.utc, now=NOW)
    assert rows[0][:3] == ["j9x", "sweep[1]", "running"]
    assert rows[1] == ["j0", "sweep[2-3,5-9%2]", "queued", "", "09:30:00", "", "7 elements, at most 2 at once"]
    assert len(rows) == 2
    lone = job(id="j5", name="sweep", array_id="j0", array_index=5, state="queued", queue_position=1)
    assert job_rows([lone], owners=False)[1][0][:3] == ["j5", "sweep[5]", "queued"]  # one element: its own row


def test_list_has_a_header_when_empty_and_an_owner_column_for_several_users():
    assert render_list([], "table") == "ID  NAME  STATE  PROGRESS  SUBMITTED  RUN TIME  EXIT/REASON"
    assert render_list([], "ids") == "" and render_list([], "json") == "[]"
    text = render_list([job(id="j2", owner="bob"), job(id="j1")], "table")
    assert text.splitlines()[0].split()[:3] == ["ID", "OWNER", "NAME"]
    assert text.splitlines()[1].split()[:2] == ["j2", "bob"]
    assert render_list([job(id="j2"), job(id="j1")], "ids") == "j2\nj1"


def test_wait_status_precedence():
    assert wait_status([]) is WaitStatus.COMPLETED
    assert wait_status(["completed", "completed"]) == 0
    assert wait_status(["completed", "canceled"]) == 3
    assert wait_status(["canceled", "lost"]) == 5
    assert wait_status(["lost", "timed_out", "canceled"]) == 4
    assert wait_status(["timed_out", "failed", "completed"]) == 1
    assert [int(s) for s in WaitStatus] == [0, 1, 2, 3, 4, 5, 124]


def test_end_line_says_a_reason_once():
    assert end_line({"id": "j1", "state": "completed", "exit_code": 0, "reason": "exit code 0"}, False) == (
        "completed (exit code 0)")
    assert end_line({"id": "j1", "state": "failed", "exit_code": 3, "reason": "exit code 3"}, True) == (
        "j1 failed (exit code 3)")
    assert end_line({"id": "j1", "state": "lost", "exit_code": None, "reason": "agent lost"}, True) == (
        "j1 lost: agent lost")


def test_analysis_arguments():
    assert parse_key_values(["column=x", "n=3", "flags=[1, 2]", "on=true", "text=a=b"], "--arg") == {
        "column": "x", "n": 3, "flags": [1, 2], "on": True, "text": "a=b"}
    with pytest.raises(CliError, match="--arg 'novalue': expected KEY=VALUE$") as caught:
        parse_key_values(["novalue"], "--arg")
    assert caught.value.status == 2


def test_get_target_is_checked_before_the_download(tmp_path):
    assert output_path("out/r.bin", str(tmp_path / "x.bin"), False) == tmp_path / "x.bin"
    assert output_path("out/r.bin", str(tmp_path), False) == tmp_path / "r.bin"  # into a directory
    with pytest.raises(CliError, match="does not exist"):
        output_path("r.bin", str(tmp_path / "missing" / "dir" / "x"), False)
    (tmp_path / "r.bin").write_bytes(b"old")
    with pytest.raises(CliError, match="--force replaces it"):
        output_path("r.bin", str(tmp_path), False)
    assert output_path("r.bin", str(tmp_path), True) == tmp_path / "r.bin"
