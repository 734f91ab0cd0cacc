"""`bench/throughput` end to end with tiny numbers, so the benchmark keeps working: what it
prints is checked for shape and for every job's end, never for speed."""

from __future__ import annotations

import asyncio
import importlib.machinery
import importlib.util
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
    assert result["mkdir_us"] > 0 and (result["mkdir_ram_us"] is None or result["mkdir_ram_us"] > 0)


def _bench_module():
    loader = importlib.machinery.SourceFileLoader("bench_throughput", str(BENCH))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def test_a_file_system_far_slower_than_memory_is_pointed_out(tmp_path: Path, capsys):
    bench = _bench_module()
    ram = tmp_path / "ram"
    ram.mkdir()
    ram_us = bench.warn_if_settling(1e9, str(ram))
    assert ram_us is not None and ram_us > 0
    assert "can be this slow for a few minutes" in capsys.readouterr().out
    assert bench.warn_if_settling(0.0, str(ram)) is not None
    assert capsys.readouterr().out == ""
    assert bench.warn_if_settling(1e9, str(tmp_path / "missing")) is None
    assert capsys.readouterr().out == ""


async def test_the_benchmark_runs_on_postgresql(tmp_path: Path, postgres_database):
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(BENCH), "--jobs", "20", "--batch", "10", "--latency", "2", "--python-jobs", "0",
        "--floor-seconds", "0.2", "--watch", "events", "--state-parent", str(tmp_path),
        "--database", "postgresql", "--database-url", postgres_database.url,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 300)
    assert proc.returncode == 0, stderr.decode()[-3000:]
    result = json.loads(stdout.decode().strip().splitlines()[-1])
    assert result["database"] == "postgresql" and result["throughput"]["states"] == {"completed": 20}
