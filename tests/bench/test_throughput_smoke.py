"""`bench/throughput` end to end with tiny numbers, so the benchmark keeps working: what it
prints is checked for shape and for every job's end, never for speed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "throughput"


def test_the_benchmark_runs_and_reports_every_figure(tmp_path: Path):
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--jobs", "40", "--batch", "20", "--latency", "3", "--python-jobs", "2",
         "--floor-seconds", "0.3", "--state-parent", str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["floor"]["spawns_per_s"] > 0
    for key, watch in (("throughput", "events"), ("throughput_poll", "poll")):
        run = result[key]
        assert run["watch"] == watch and run["states"] == {"completed": 40}
        assert run["floor_before"] > 0 and run["floor_after"] > 0
        mean = (run["floor_before"] + run["floor_after"]) / 2
        assert abs(run["ratio_to_floor"] - run["jobs_per_s"] / mean) < 1e-9
    assert result["latency_ms"]["n"] == 3 and result["python"]["states"] == {"completed": 2}
    assert "of the spawn floor around it" in proc.stdout
