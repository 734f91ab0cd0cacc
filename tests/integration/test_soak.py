"""The kill -9 soak, CI-sized (tests/soak.py; `bench/soak` runs 5,000 jobs): 600 short jobs on
the local driver of a real `jobvisor up` while `up` and its agents are SIGKILLed, on SQLite and
on PostgreSQL. Then every job is terminal, no attempt ran twice (by the markers the jobs wrote),
every completed job's log is whole.

The seed changes from run to run, so CI covers other schedules each time; a failure prints it
(JOBVISOR_SOAK_SEED=N replays the same jobs and kill draws, not the same timing), and the
evidence (histories, markers, kills) is written to the test's tmp dir as findings.md, or
appended to the file that JOBVISOR_SOAK_FINDINGS names."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from jobvisor.isotime import iso
from tests.soak import JobPlan, SoakOptions, SoakResult, check_job, check_times, findings_markdown, report_lines, run_soak

JOBS = 600
BENCH = Path(__file__).resolve().parents[2] / "bench" / "soak"


@pytest.mark.integration
@pytest.mark.timeout(300)
async def test_every_job_ends_once_per_attempt_with_its_whole_log_while_up_and_agents_are_killed(database, tmp_path: Path):
    seed = int(os.environ.get("JOBVISOR_SOAK_SEED", random.randrange(1 << 30)))
    options = SoakOptions(jobs=JOBS, seed=seed, kill_interval=2.0, max_kills=7, agent_share=0.3,
                          agent_while_down=0.5, cpus=8, database_url=database.url, state_parent=str(tmp_path),
                          recover_timeout=40.0, settle_timeout=90.0)
    result = await run_soak(options, log=print)
    print("\n".join(report_lines(result)))
    # pytest keeps only the last few tmp dirs: JOBVISOR_SOAK_FINDINGS=FILE appends the evidence there too
    findings = Path(os.environ.get("JOBVISOR_SOAK_FINDINGS") or tmp_path / "findings.md")
    if result.problems or result.notes:
        with open(findings, "a") as out:
            out.write(findings_markdown(result, f"tests/integration/test_soak.py, seed {seed}, {database.kind}"))
    assert not result.problems, (f"seed {seed} ({database.kind}): {len(result.problems)} problems, evidence in "
                                 f"{findings}:\n" + "\n".join(result.problems[:30]))
    assert result.jobs == JOBS and sum(result.states.values()) == JOBS
    # the soak proved something only if it killed while jobs ran, both kinds
    assert result.up_kills >= 1 and result.agent_kills >= 1, result.kills
    assert result.markers >= result.states.get("completed", 0)


@pytest.mark.integration
def test_bench_soak_runs_and_reports_its_counts_as_json(tmp_path: Path):
    """bench/soak end to end with tiny numbers and no kill, so the script keeps working."""
    proc = subprocess.run([sys.executable, str(BENCH), "--jobs", "30", "--max-kills", "0", "--seed", "7",
                           "--state-parent", str(tmp_path), "--json"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (line,) = proc.stdout.strip().splitlines()
    result = json.loads(line)
    assert result["jobs"] == 30 and result["states"] == {"completed": 30} and result["markers"] == 30
    assert result["up_kills"] == result["agent_kills"] == 0 and result["problems"] == []
    assert result["database"] == "sqlite" and result["machine"]["cpus"] > 0
    assert list(tmp_path.iterdir()) == [], "the soak left its temp dir behind"


# The checks themselves, on made-up records: each must catch what it is there for.

PLAN = JobPlan(sleep=0.0, before=2, lines=3, max_retries=2)


def record(state: str, attempt: int, history: list[tuple[int, str]], **extra) -> dict:
    return {"id": "j1", "state": state, "attempt": attempt, "max_retries": PLAN.max_retries, "reason": "",
            "exit_code": 0 if state == "completed" else None,
            "history": [{"attempt": a, "state": s, "reason": "", "at": iso(100.0 + i)} for i, (a, s) in enumerate(history)],
            **extra}


RETRIED = [(1, "queued"), (1, "starting"), (1, "running"), (1, "lost"), (2, "queued"), (2, "starting"),
           (2, "running"), (2, "completed")]


def test_a_retried_job_with_one_marker_per_attempt_and_its_last_attempts_log_passes():
    assert check_job(record("completed", 2, RETRIED), PLAN, [1, 2], PLAN.expected_log("j1", 2)) == []


def test_an_attempt_that_ran_twice_is_caught():
    history = [(1, "queued"), (1, "starting"), (1, "queued"), (1, "starting"), (1, "running"), (1, "completed")]
    problems = check_job(record("completed", 1, history), PLAN, [1, 1], PLAN.expected_log("j1", 1))
    assert any("ran 2 times under attempt 1" in p for p in problems), problems


@pytest.mark.parametrize("log, says", [
    (None, "no log"),
    (b"", "0 bytes, expected"),
    (PLAN.expected_log("j1", 2)[:-5], "expected"),
    (PLAN.expected_log("j1", 1), "'j1 1 1\\n' where the job printed 'j1 2 1\\n'"),  # an earlier attempt's bytes
])
def test_a_log_that_is_not_the_last_attempts_whole_output_is_caught(log: bytes | None, says: str):
    problems = check_job(record("completed", 2, RETRIED), PLAN, [1, 2], log)
    assert any(p.startswith("log is not whole") or p == "no log" for p in problems) and any(says in p for p in problems), problems


@pytest.mark.parametrize("job, markers, says", [
    (record("running", 1, [(1, "queued"), (1, "starting"), (1, "running")]), [1], "not terminal"),
    (record("failed", 1, [(1, "queued"), (1, "starting"), (1, "running"), (1, "failed")]), [1], "cannot"),
    (record("lost", 2, [(1, "queued"), (1, "starting"), (1, "lost"), (2, "queued"), (2, "starting"), (2, "lost")]),
     [], "retries left"),
    (record("completed", 2, RETRIED), [1], "completed attempt 2 but its markers are [1]"),
    (record("completed", 1, [(1, "queued"), (1, "starting"), (1, "running"), (1, "completed")]), [1, 2],
     "beyond its attempt"),
    (record("completed", 2, [(1, "queued"), (1, "starting"), (1, "completed"), (2, "queued"), (2, "starting"),
                             (2, "running"), (2, "completed")]), [1, 2], "began after completed"),
    (record("canceled", 2, [(1, "queued"), (1, "starting"), (1, "lost"), (2, "queued"), (2, "canceled")]), [1, 2],
     "a marker for attempt 2, which its history never started nor lost"),
    (record("completed", 2, RETRIED[:-1]), [1, 2], "history ends at attempt 2 running"),
])
def test_each_inconsistency_between_record_markers_and_history_is_caught(job: dict, markers: list[int], says: str):
    problems = check_job(job, PLAN, markers, PLAN.expected_log("j1", job["attempt"]))
    assert any(says in p for p in problems), problems


def test_a_history_whose_times_run_backwards_is_noted():
    job = record("completed", 1, [(1, "queued"), (1, "starting"), (1, "running"), (1, "completed")])
    assert check_times(job["history"]) == []
    job["history"][1]["at"] = iso(101.0 + 1.5)  # `starting` stamped after the running and the end
    assert check_times(job["history"]) == ["history goes back in time by 0.500 s at running (attempt 1)"]
    assert check_job(job, PLAN, [1], PLAN.expected_log("j1", 1)) == []  # a note, not a failure


def test_findings_give_history_times_as_seconds_from_the_start():
    job = record("lost", 1, [(1, "queued"), (1, "starting"), (1, "lost")])
    result = SoakResult(jobs=1, states={"lost": 1}, markers=0, retries=0, retried_jobs=0, up_kills=0, agent_kills=1,
                        seconds=3.0, settle_seconds=1.0, problems=["p"], notes=[], kills=[],
                        evidence=[{"job": job, "markers": [], "problems": ["p"], "log_head": None, "kills_around": []}],
                        started_at=99.5)
    text = findings_markdown(result, "t")
    assert "  -    0.500 s  attempt 1 queued" in text and "  -    2.500 s  attempt 1 lost" in text
