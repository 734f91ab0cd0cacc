"""`bench/workflows` end to end with tiny numbers, so the benchmark keeps working: what it
prints is checked for shape and for every workflow's end, never for speed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "workflows"


def test_the_workflow_benchmark_runs_and_reports_every_figure(tmp_path: Path):
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--doc-jobs", "50", "--chain", "5", "--fan", "20", "--waiting", "200",
         "--rounds", "1", "--state-parent", str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["validate_store"]["jobs"] == 50 and len(result["validate_store"]["seconds"]) == 3
    assert result["chain"]["jobs"] == 5 and result["chain"]["seconds"] > 0
    assert result["release_latency"]["edges"] == 4 and result["release_latency"]["p50_ms"] >= 0
    fan = result["fan"]
    assert fan["jobs"] == 20 and len(fan["fan_jobs_per_s"]) == len(fan["independent_jobs_per_s"]) == 1
    assert abs(fan["ratio_of_medians"] - fan["fan_jobs_per_s"][0] / fan["independent_jobs_per_s"][0]) < 1e-9
    assert result["waiting_memory"]["waiting"] == 200 and result["waiting_memory"]["rss_after"] > 0
    assert "machine:" in proc.stdout and "per waiting job" in proc.stdout
