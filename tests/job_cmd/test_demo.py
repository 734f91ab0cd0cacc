import csv
import json
import math
import os
import struct
import subprocess
import zlib

import pytest

from jobvisor.errors import InvalidRequest, NotFound
from jobvisor.resources import Resources

from job_cmd.codes import get_code
from job_cmd.codes.demo import rk4_step
from job_cmd.plot import PNG_SIGNATURE, encode_png, line_plot_png


def png_chunks(data: bytes):
    assert data[:8] == PNG_SIGNATURE
    pos, chunks = 8, []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        tag, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        assert crc == zlib.crc32(tag + body) & 0xFFFFFFFF, tag
        chunks.append((tag, body))
        pos += 12 + length
    return chunks


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("demo")
    launch = get_code("demo").launch({"steps": 400, "dt": 0.05, "print_every": 100}, run_dir, Resources())
    env = {**os.environ, "JOBVISOR_PROGRESS_FILE": str(run_dir / "progress.json")}
    proc = subprocess.run(launch.argv, cwd=run_dir, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return run_dir, proc.stdout


def test_demo_writes_csv_and_prints(demo_run):
    run_dir, stdout = demo_run
    with open(run_dir / "data.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["t", "x", "v", "energy"] and len(rows) == 402
    assert float(rows[-1][0]) == pytest.approx(20.0)
    assert stdout.count("step ") == 4 and "step 400/400" in stdout
    result = json.loads((run_dir / ".jobvisor" / "result.json").read_text())
    assert result["steps"] == 400 and result["x"] == pytest.approx(float(rows[-1][1]), rel=1e-6)
    progress = json.loads((run_dir / "progress.json").read_text())
    assert progress["fraction"] == 1.0 and progress["message"] == "step 400 of 400"


def test_demo_png_is_valid(demo_run):
    run_dir, _ = demo_run
    chunks = png_chunks((run_dir / "plot.png").read_bytes())
    assert [tag for tag, _ in chunks] == [b"IHDR", b"IDAT", b"IEND"]
    width, height, depth, color, _, _, _ = struct.unpack(">IIBBBBB", chunks[0][1])
    assert (width, height, depth, color) == (640, 400, 8, 2)
    raw = zlib.decompress(chunks[1][1])
    assert len(raw) == height * (1 + width * 3)
    rows = [raw[y * (1 + width * 3) + 1:(y + 1) * (1 + width * 3)] for y in range(height)]
    blue = bytes((31, 119, 180))
    assert sum(row.count(blue) for row in rows) > 300  # the data line was drawn


def test_demo_analyze(demo_run):
    run_dir, _ = demo_run
    summary = get_code("demo").analyze(run_dir, {})
    assert summary["rows"] == 401 and summary["column"] == "x"
    assert summary["min"] < 0 < summary["max"] and summary["min"] <= summary["mean"] <= summary["max"]
    assert summary["max"] == 1.0  # x0
    energy = get_code("demo").analyze(run_dir, {"column": "energy"})
    assert energy["min"] >= 0
    with pytest.raises(InvalidRequest):
        get_code("demo").analyze(run_dir, {"column": "bogus"})


def test_demo_analyze_without_data(tmp_path):
    with pytest.raises(NotFound):
        get_code("demo").analyze(tmp_path, {})


def test_rk4_matches_the_undamped_solution():
    p = {"omega0": 1.0, "zeta": 0.0, "force": 0.0, "drive_omega": 0.0}
    x, v, t, dt = 1.0, 0.0, 0.0, 0.01
    for i in range(628):
        x, v = rk4_step(t, x, v, dt, p)
        t = (i + 1) * dt
    assert x == pytest.approx(math.cos(t), abs=1e-8) and v == pytest.approx(-math.sin(t), abs=1e-8)


def test_plot_helpers():
    png = line_plot_png([0, 1, 2], [5.0, 5.0, 5.0], width=100, height=80)  # flat line: no division by zero
    assert struct.unpack(">II", png_chunks(png)[0][1][:8]) == (100, 80)
    with pytest.raises(ValueError):
        encode_png(2, 2, b"\x00" * 11)
