"""progress.py, status_file.py and the analysis command."""

import json
import subprocess
import sys

from job_cmd import progress
from job_cmd.status_file import JobStatus, read_status, status_path, write_status


def test_progress_noop_without_env(monkeypatch, tmp_path):
    monkeypatch.delenv(progress.ENV_VAR, raising=False)
    progress.report(0.5, "ignored")
    assert list(tmp_path.iterdir()) == []


def test_progress_writes_and_clamps(monkeypatch, tmp_path):
    path = tmp_path / "progress.json"
    monkeypatch.setenv(progress.ENV_VAR, str(path))
    progress.report(0.25, "a quarter")
    data = json.loads(path.read_text())
    assert data["fraction"] == 0.25 and data["message"] == "a quarter" and data["at"] > 0
    progress.report(7, "too much")
    assert progress.read_progress(path).fraction == 1.0
    progress.report(float("nan"))
    assert progress.read_progress(path).fraction == 0.0
    assert [p.name for p in tmp_path.iterdir()] == ["progress.json"]  # no temp file left


def test_read_progress_tolerates_garbage(tmp_path):
    path = tmp_path / "p.json"
    assert progress.read_progress(path) is None
    path.write_text("{half")
    assert progress.read_progress(path) is None
    path.write_text('{"fraction": "x"}')
    assert progress.read_progress(path) is None
    path.write_text('{"fraction": 0.5}')
    assert progress.read_progress(path) == progress.ProgressReport(0.5, "", 0.0)


def test_status_file_round_trip(tmp_path):
    assert read_status(tmp_path) is None
    status = JobStatus("j1", 2, "completed", "", pid=12, exit_code=0, started_at=1.0, finished_at=2.0, log_size=5)
    write_status(tmp_path, status)
    assert read_status(tmp_path) == status
    assert status_path(tmp_path) == tmp_path / ".jobvisor" / "status.json"
    status_path(tmp_path).write_text("[]")
    assert read_status(tmp_path) is None


def analysis(code, run_dir, args):
    proc = subprocess.run(
        [sys.executable, "-m", "job_cmd.analysis", code, str(run_dir)],
        input=args, capture_output=True, text=True, timeout=60,
    )
    return proc.returncode, json.loads(proc.stdout)


def test_analysis_command(tmp_path):
    (tmp_path / "output.log").write_text("a\nb\n")
    assert analysis("shell", tmp_path, "") == (0, {"files": [{"path": "output.log", "size": 4}], "total_bytes": 4, "log_lines": 2})
    code, out = analysis("demo", tmp_path, '{"column": "x"}')
    assert code == 1 and out["error"]["kind"] == "not_found"
    code, out = analysis("nope", tmp_path, "{}")
    assert code == 1 and out["error"]["kind"] == "invalid" and "unknown code 'nope'" in out["error"]["detail"]
    code, out = analysis("shell", tmp_path, "{bad json")
    assert code == 1 and out["error"]["field"] == "args"
