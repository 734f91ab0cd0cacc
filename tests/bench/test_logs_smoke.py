"""`bench/logs` end to end with a small log, so the benchmark keeps working: what it prints is
checked for shape, never for speed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "logs"


def test_the_log_benchmark_runs_and_reports_every_figure(tmp_path: Path):
    proc = subprocess.run([sys.executable, str(BENCH), "--runs", "2", "--sizes", "1,3", "--state-parent", str(tmp_path)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["machine"]["cpus"] > 0 and result["sizes_mb"] == [1.0, 3.0]
    assert sorted(run["bytes"] for run in result["runs"]) == [1_000_000, 1_000_000, 3_000_000, 3_000_000]
    for run in result["runs"]:
        assert run["ingest_mb_s"] > 0 and run["download_mb_s"] > 0 and run["cpu_ms_per_mb"] >= 0
    assert set(result["medians"]) == {"1", "3"}
    assert "median of 2, 3 MB" in proc.stdout
    assert list(tmp_path.iterdir()) == [], "the benchmark left its state dir behind"
