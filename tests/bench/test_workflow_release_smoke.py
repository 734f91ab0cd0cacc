"""`bench/workflow_release` with tiny numbers, against HEAD, so the benchmark keeps working: what
it prints is checked for shape, never for speed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "workflow_release"


def test_the_release_benchmark_runs_both_trees_and_reports_every_figure():
    proc = subprocess.run([sys.executable, str(BENCH), "--chain", "20", "--fan", "30", "--rounds", "2", "--before", "HEAD"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert (result["chain"], result["fan"], result["rounds"], result["before_rev"]) == (20, 30, 2, "HEAD")
    for kind in ("chain", "fan"):
        assert result[f"{kind}_us_before"] > 0 and result[f"{kind}_us_after"] > 0
        assert abs(result[f"{kind}_ratio"] - result[f"{kind}_us_after"] / result[f"{kind}_us_before"]) < 0.01
    assert "machine:" in proc.stdout and "per released job" in proc.stdout
