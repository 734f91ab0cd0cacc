"""What the CLI prints for a person: local times, durations, memory sizes, walltimes, progress.

Pure functions of their input (a time zone and "now" can be passed in), so each is tested
exactly; the API keeps the exact values (ISO 8601 UTC times, bytes, seconds) for programs.
"""

from __future__ import annotations

import shlex
from datetime import datetime, tzinfo
from typing import Any

from jobvisor.isotime import parse_iso
from jobvisor.resources import format_walltime

_DEFAULT_RESOURCES = {"gpus": 0, "nodes": 1}
_MEMORY_UNITS = (("T", 1024**4), ("G", 1024**3), ("M", 1024**2), ("K", 1024))


def to_local(value: Any, tz: tzinfo | None = None) -> datetime | None:
    """An API time (ISO string, or a Unix time from an older server) as an aware local
    datetime; None when it is not a time."""
    try:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return datetime.fromtimestamp(value, tz).astimezone(tz)
        return parse_iso(value).astimezone(tz)
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def local_time(value: Any, tz: tzinfo | None = None) -> str:
    """In full, to the millisecond, with its offset: `2026-12-05 07:01:02.345+01:00`. A value
    that is not a time is shown as it is."""
    at = to_local(value, tz)
    return str(value) if at is None else at.isoformat(sep=" ", timespec="milliseconds")


def short_time(value: Any, tz: tzinfo | None = None, now: datetime | None = None) -> str:
    """For a table: `09:30:26` today, `Dec 04 09:30` this year, `2025-12-04` before; "-" for none."""
    at = to_local(value, tz)
    if at is None:
        return "-" if value is None else str(value)
    now = (now or datetime.now(tz)).astimezone(tz)
    if at.date() == now.date():
        return at.strftime("%H:%M:%S")
    if at.year == now.year:
        return at.strftime("%b %d %H:%M")
    return at.strftime("%Y-%m-%d")


def duration(seconds: float | None) -> str:
    """`14 ms`, `0.4 s`, `3.2 s`, `42 s`, `4m 05s`, `1h 04m`, `2d 03h`; "-" for none."""
    if seconds is None:
        return "-"
    seconds = max(0.0, float(seconds))
    if seconds < 0.1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 60:
        return f"{int(seconds)} s"
    total = int(seconds)
    if total < 3600:
        return f"{total // 60}m {total % 60:02d}s"
    if total < 86400:
        return f"{total // 3600}h {total % 3600 // 60:02d}m"
    return f"{total // 86400}d {total % 86400 // 3600:02d}h"


def memory(size: int | None) -> str:
    """Bytes in the units a submit takes (binary), to two decimals: `2G`, `512M`, `1.25G`, `100B`;
    "-" for none."""
    if size is None:
        return "-"
    for unit, scale in _MEMORY_UNITS:
        if size >= scale:
            value = size / scale
            text = f"{value:.2f}".rstrip("0").rstrip(".")
            return f"{text}{unit}"
    return f"{size}B"


def walltime(seconds: float | None) -> str:
    """`01:30:00` (hours past 24 stay hours, as Slurm's `--time` reads them); "-" for none."""
    return "-" if seconds is None else format_walltime(seconds)


def percent(fraction: float | None) -> str:
    return "-" if fraction is None else f"{min(1.0, max(0.0, fraction)) * 100:.0f}%"


def run_time(job: dict, now: datetime | None = None) -> float | None:
    """How long the job's current attempt has run: from its start to its end, or to now."""
    started = to_local(job.get("started_at"))
    if started is None:
        return None
    finished = to_local(job.get("finished_at"))
    end = finished or (now or datetime.now(started.tzinfo))
    return (end - started).total_seconds()


def resources(res: dict | None) -> str:
    """`cpus 2, memory 2G, walltime 01:30:00` (other keys as they are; no gpus, one node: not said)."""
    parts = []
    for key, value in (res or {}).items():
        if key in _DEFAULT_RESOURCES and _DEFAULT_RESOURCES[key] == value:
            continue
        if key == "memory" and isinstance(value, int):
            value = memory(value)
        elif key == "walltime" and isinstance(value, (int, float)):
            value = walltime(value)
        elif isinstance(value, dict):  # a cluster's extra options: {"qos": "debug"}
            value = " ".join(f"{k}={v}" for k, v in value.items()) or "-"
        parts.append(f"{key} {value}")
    return ", ".join(parts) or "-"


def command_summary(job: dict) -> str:
    """What the job runs, in a few words: its shell command, python entry, or code name."""
    params = job.get("params")
    code = job.get("code") or ""
    if isinstance(params, dict):
        if code == "shell" and isinstance(params.get("argv"), list):
            return shlex.join(str(a) for a in params["argv"])
        if code == "shell" and isinstance(params.get("script"), str):
            lines = params["script"].strip().splitlines()
            return lines[0] + (" ..." if len(lines) > 1 else "") if lines else "shell script"
        if code == "python" and params.get("entry"):
            return f"python {params['entry']}"
    return code


def clip(text: str, width: int) -> str:
    """At most `width` characters, an ellipsis marking a cut."""
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"


def table(rows: list[list[Any]], headers: list[str]) -> str:
    """Columns left-aligned to their widest cell, two spaces apart; the header even with no rows."""
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows)]
    lines = ["  ".join(str(v).ljust(w) for v, w in zip(row, widths)).rstrip() for row in [headers, *rows]]
    return "\n".join(lines)
