"""`jobvisor workflow status`'s rendering, as pure functions: the live table (cut to the
terminal with the jobs that matter now kept), the plain lines of what changed, the redraw."""

from __future__ import annotations

import io

import pytest

from jobvisor.cli.workflows import LiveTable, changed_lines, read_document, render_status


def view(*jobs: tuple[str, str | None, float | None], state: str = "running") -> dict:
    return {
        "id": "w1", "name": "study", "run": 2, "state": state, "reason": "",
        "counts": {"completed": 1, "running": 1},
        "jobs": [{"name": n, "state": s, "progress": p, "job_id": f"j-{n}" if s else None, "reason": ""} for n, s, p in jobs],
    }


def test_the_table_has_a_row_per_job_with_state_and_progress():
    lines = render_status(view(("prep", "completed", 1.0), ("solve", "running", 0.42), ("report", "waiting", None)))
    assert lines[0] == "workflow study (w1) run 2: running"
    assert lines[1] == "jobs: running 1, completed 1"
    assert lines[2].split() == ["JOB", "STATE", "PROGRESS", "ID", "REASON"]
    assert lines[3].split() == ["prep", "completed", "100%", "j-prep"]
    assert lines[4].split() == ["solve", "running", "42%", "j-solve"]
    assert lines[5].split() == ["report", "waiting", "j-report"]


def test_a_long_table_keeps_the_jobs_that_matter_now():
    jobs = [(f"c{i}", "completed", None) for i in range(50)] + [("hot", "running", 0.5), ("bad", "failed", None)]
    lines = render_status(view(*jobs), max_rows=8)
    assert len(lines) == 8
    assert [line.split()[0] for line in lines[3:-1]] == ["c0", "c1", "hot", "bad"]  # in the document's order
    assert lines[-1] == "... and 48 more jobs"


def test_plain_output_prints_what_changed_only():
    lines, seen = changed_lines({}, view(("prep", "running", None), ("solve", None, None)))
    assert lines == ["prep: running (j-prep)", "solve: not run"]
    lines, seen = changed_lines(seen, view(("prep", "running", None), ("solve", None, None)))
    assert lines == []
    lines, _ = changed_lines(seen, view(("prep", "completed", 1.0), ("solve", None, None)))
    assert lines == ["prep: completed 100% (j-prep)"]


def test_the_live_table_redraws_in_place():
    out = io.StringIO()
    live = LiveTable(out)
    live.draw(["a", "b"])
    live.draw(["c"])
    assert out.getvalue() == "a\nb\n\x1b[2F\x1b[Jc\n"


def test_a_documents_type_follows_its_suffix(tmp_path):
    (tmp_path / "w.yml").write_text("name: w\n")
    (tmp_path / "w.json").write_text('{"name": "w"}')
    assert read_document(str(tmp_path / "w.yml")).content_type == "application/yaml"
    assert read_document(str(tmp_path / "w.json")).content_type == "application/json"


class FlakyGateway:
    """Answers GET /workflows/w1 from a script: an error to raise, or a view."""

    def __init__(self, *answers) -> None:
        self.answers = list(answers)

    def call(self, method: str, path: str, **kwargs) -> dict:
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def test_a_watch_outlasts_a_gateway_that_is_down_but_not_a_404(capsys):
    from jobvisor.cli.client import ApiError
    from jobvisor.cli.errors import CliError
    from jobvisor.cli.workflows import watch

    out = io.StringIO()
    gateway = FlakyGateway(view(("prep", "running", None)), CliError("cannot reach the gateway"),
                           ApiError(503, "the supervisor is unreachable"), view(("prep", "completed", 1.0), state="completed"))
    assert watch(gateway, "w1", 0.01, out) == 0
    assert out.getvalue().splitlines()[-1] == "workflow w1 completed: running 1, completed 1"
    assert capsys.readouterr().err.count("trying again") == 1  # said once for the whole outage

    with pytest.raises(ApiError) as info:
        watch(FlakyGateway(ApiError(404, "no workflow 'w1'")), "w1", 0.01, io.StringIO())
    assert info.value.http_status == 404  # an answer about the workflow ends the watch
