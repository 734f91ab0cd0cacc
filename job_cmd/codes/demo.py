"""`demo`: a damped, driven harmonic oscillator integrated with classical Runge-Kutta (RK4).

    x'' + 2 zeta omega0 x' + omega0^2 x = force cos(drive_omega t)

Pure Python. Writes `data.csv` (t, x, v, energy), `plot.png` (x against t) and a JSON result
into the run dir, reports progress and prints a line every `print_every` steps. Runs as
`python -m job_cmd.codes.demo --steps=... --dt=...`. Its analysis summarises a column of
data.csv: rows, min, max, mean, final value. Its params are checked by
`jobvisor.code_params.check_demo`, which the gateway runs at submit.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
import time
from pathlib import Path
from typing import Any

from jobvisor.code_params import DEMO_PARAMS, check_demo
from jobvisor.errors import InvalidRequest, NotFound
from jobvisor.resources import Resources

from job_cmd import progress
from job_cmd.codes.base import Code, Launch
from job_cmd.errors import InvalidParams
from job_cmd.fsutil import RESULT_FILE, meta_dir, write_json_atomic
from job_cmd.plot import line_plot_png

DATA_FILE = "data.csv"
PLOT_FILE = "plot.png"
COLUMNS = ("t", "x", "v", "energy")
MAX_PLOT_POINTS = 2000

def derivative(t: float, x: float, v: float, p: dict) -> tuple[float, float]:
    accel = p["force"] * math.cos(p["drive_omega"] * t) - 2.0 * p["zeta"] * p["omega0"] * v - p["omega0"] ** 2 * x
    return v, accel


def rk4_step(t: float, x: float, v: float, dt: float, p: dict) -> tuple[float, float]:
    k1x, k1v = derivative(t, x, v, p)
    k2x, k2v = derivative(t + dt / 2, x + dt / 2 * k1x, v + dt / 2 * k1v, p)
    k3x, k3v = derivative(t + dt / 2, x + dt / 2 * k2x, v + dt / 2 * k2v, p)
    k4x, k4v = derivative(t + dt, x + dt * k3x, v + dt * k3v, p)
    return x + dt / 6 * (k1x + 2 * k2x + 2 * k3x + k4x), v + dt / 6 * (k1v + 2 * k2v + 2 * k3v + k4v)


def energy(x: float, v: float, p: dict) -> float:
    return 0.5 * v * v + 0.5 * p["omega0"] ** 2 * x * x


def simulate(p: dict, run_dir: Path) -> dict:
    steps, dt, every = int(p["steps"]), p["dt"], int(p["print_every"])
    t, x, v = 0.0, p["x0"], p["v0"]
    stride = max(1, (steps + 1) // MAX_PLOT_POINTS)
    ts, xs = [t], [x]
    with open(run_dir / DATA_FILE, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(COLUMNS)
        writer.writerow((t, x, v, energy(x, v, p)))
        for i in range(1, steps + 1):
            x, v = rk4_step(t, x, v, dt, p)
            t = i * dt
            writer.writerow((f"{t:.10g}", f"{x:.10g}", f"{v:.10g}", f"{energy(x, v, p):.10g}"))
            if i % stride == 0 or i == steps:
                ts.append(t)
                xs.append(x)
            if i % every == 0 or i == steps:
                print(f"step {i}/{steps} t={t:.4f} x={x:.6f} v={v:.6f}", flush=True)
                progress.report(i / steps, f"step {i} of {steps}")
            if p["step_delay"]:
                time.sleep(p["step_delay"])
    png = line_plot_png(ts, xs)
    tmp = run_dir / (PLOT_FILE + ".tmp")
    tmp.write_bytes(png)
    tmp.replace(run_dir / PLOT_FILE)
    return {"steps": steps, "t": t, "x": x, "v": v, "energy": energy(x, v, p)}


class DemoCode(Code):
    name = "demo"

    def launch(self, params: Any, run_dir: Path, resources: Resources) -> Launch:
        checked = check_demo(params)
        return Launch(argv=[sys.executable, "-m", "job_cmd.codes.demo", *(f"--{k}={v!r}" for k, v in checked.items())])

    def analyze(self, run_dir: Path, args: dict) -> dict:
        column = args.get("column", "x") if isinstance(args, dict) else None
        if column not in COLUMNS:
            raise InvalidRequest(f"args.column must be one of {', '.join(COLUMNS)}, not {column!r}", field="args.column")
        try:
            fh = open(Path(run_dir) / DATA_FILE, newline="")
        except FileNotFoundError:
            raise NotFound(f"{DATA_FILE} not found in the run dir: did the run start?") from None
        with fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if header is None or column not in header:
                raise NotFound(f"{DATA_FILE} has no column {column!r}")
            index = header.index(column)
            rows, total, lo, hi, last = 0, 0.0, math.inf, -math.inf, None
            for row in reader:
                try:
                    value = float(row[index])
                except (IndexError, ValueError):
                    continue  # a row being written when we read
                rows += 1
                total += value
                lo, hi, last = min(lo, value), max(hi, value), value
        if not rows:
            return {"column": column, "rows": 0, "min": None, "max": None, "mean": None, "final": None}
        return {"column": column, "rows": rows, "min": lo, "max": hi, "mean": total / rows, "final": last}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m job_cmd.codes.demo", description=__doc__.splitlines()[0])
    for name, (kind, default, _, _) in DEMO_PARAMS.items():
        parser.add_argument(f"--{name}", type=kind, default=default)
    options = vars(parser.parse_args(argv))
    try:
        p = check_demo(options)
    except InvalidParams as exc:
        parser.error(str(exc))
    run_dir = Path.cwd()
    started = time.monotonic()
    summary = simulate(p, run_dir)
    summary["seconds"] = round(time.monotonic() - started, 3)
    meta_dir(run_dir).mkdir(mode=0o700, exist_ok=True)
    write_json_atomic(meta_dir(run_dir) / RESULT_FILE, summary)
    print(f"done: wrote {DATA_FILE} and {PLOT_FILE}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
