"""Parsing of a job's resources: cpus, memory, gpus, walltime.

Kept pure so the gateway validates input with the same rules the drivers apply.
"""

from __future__ import annotations

import copy
import math
import re
from dataclasses import dataclass

from jobvisor.durations import parse_units
from jobvisor.errors import InvalidRequest

_MEMORY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b?|b)?\s*$", re.IGNORECASE)
_UNITS = {"": 1024**2, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}  # no unit: megabytes, as in Slurm
MAX_MEMORY = 2**63 - 1  # bytes: what the wire (and Docker's and cgroups' int64) carry


def parse_memory(text: str | int) -> int:
    """'512M', '2G', '1.5GiB', '512' (megabytes, as Slurm reads a bare number), '100b' -> bytes
    (binary units, as Slurm and Docker read them). An int is bytes: what the wire carries (the
    public API reads a JSON number as megabytes: `jobvisor.job_spec.memory_in_megabytes`)."""
    if isinstance(text, int) and not isinstance(text, bool):
        value = text
    else:
        match = _MEMORY.match(str(text))
        if not match:
            raise InvalidRequest(
                f"memory {text!r} is not a size such as '512M' or '2G'", field="resources.memory"
            )
        unit = (match.group(2) or "").lower()[:1]
        number = float(match.group(1)) * _UNITS[unit]  # a long digit string reads as inf
        value = int(number) if number <= MAX_MEMORY else MAX_MEMORY + 1
    if value <= 0:
        raise InvalidRequest("memory must be positive", field="resources.memory")
    if value > MAX_MEMORY:
        raise InvalidRequest(f"memory must be at most {MAX_MEMORY} bytes", field="resources.memory")
    return value


WALLTIME_FORMS = "HH:MM:SS, MM:SS, D-HH:MM:SS, units (1h30m, 90m, 2d) or seconds"


def _bad_walltime(text: object) -> InvalidRequest:
    """The one message for a walltime that is not written in any of its forms."""
    return InvalidRequest(f"walltime {text!r} is not {WALLTIME_FORMS}", field="resources.walltime")


def parse_walltime(text: str | int | float) -> float:
    """'HH:MM:SS', 'MM:SS', 'D-HH:MM:SS', '1h30m' or seconds -> seconds."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        seconds = float(text)
    elif isinstance(text, str) and len(text) <= 32 and (with_units := parse_units(text)) is not None:
        seconds = with_units
    else:
        raw = str(text).strip()
        if len(raw) > 32:  # no walltime needs more; and int() of thousands of digits refuses
            raise InvalidRequest(f"walltime {raw[:32]!r}... is too long", field="resources.walltime")
        days = 0
        if "-" in raw:
            day_text, raw = raw.split("-", 1)
            if not day_text.isdigit():
                raise _bad_walltime(text)
            days = int(day_text)
        parts = raw.split(":")
        if not 1 <= len(parts) <= 3 or not all(p.isdigit() for p in parts):
            raise _bad_walltime(text)
        numbers = [int(p) for p in parts]
        while len(numbers) < 3:
            numbers.insert(0, 0)
        hours, minutes, secs = numbers
        seconds = float(days * 86400 + hours * 3600 + minutes * 60 + secs)
    if not math.isfinite(seconds):
        raise InvalidRequest("walltime must be a finite number of seconds", field="resources.walltime")
    if seconds <= 0:
        raise InvalidRequest("walltime must be positive", field="resources.walltime")
    return seconds


def format_walltime(seconds: float) -> str:
    total = int(round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}"


@dataclass(frozen=True, slots=True)
class Resources:
    """What a job asks for. `memory` in bytes and `walltime` in seconds, or None for no limit."""

    cpus: int = 1
    memory: int | None = None
    gpus: int = 0
    walltime: float | None = None
    nodes: int = 1
    extra: dict | None = None  # driver specific (partition, qos, account, constraint, ...)

    @classmethod
    def parse(cls, data: dict | None) -> "Resources":
        if data is None:
            return cls()
        if not isinstance(data, dict):
            raise InvalidRequest("resources must be an object", field="resources")
        known = {"cpus", "memory", "gpus", "walltime", "nodes"}
        cpus = data.get("cpus", 1)
        if not isinstance(cpus, int) or isinstance(cpus, bool) or cpus < 1:
            raise InvalidRequest("cpus must be a whole number >= 1", field="resources.cpus")
        gpus = data.get("gpus", 0)
        if not isinstance(gpus, int) or isinstance(gpus, bool) or gpus < 0:
            raise InvalidRequest("gpus must be a whole number >= 0", field="resources.gpus")
        nodes = data.get("nodes", 1)
        if not isinstance(nodes, int) or isinstance(nodes, bool) or nodes < 1:
            raise InvalidRequest("nodes must be a whole number >= 1", field="resources.nodes")
        memory = data.get("memory")
        walltime = data.get("walltime")
        extra = {k: v for k, v in data.items() if k not in known and k != "extra"}
        if isinstance(data.get("extra"), dict):  # a `to_wire()` dict parsed again keeps its extras flat
            extra = {**data["extra"], **extra}
        return cls(
            cpus=cpus,
            memory=None if memory is None else parse_memory(memory),
            gpus=gpus,
            walltime=None if walltime is None else parse_walltime(walltime),
            nodes=nodes,
            extra=extra or None,
        )

    def to_wire(self) -> dict:
        """The set fields as a plain dict (`extra` copied). Written out rather than through
        `dataclasses.asdict`, whose recursive deep copy cost more than the rest of a submit."""
        out: dict = {"cpus": self.cpus}
        if self.memory is not None:
            out["memory"] = self.memory
        out["gpus"] = self.gpus
        if self.walltime is not None:
            out["walltime"] = self.walltime
        out["nodes"] = self.nodes
        if self.extra is not None:
            out["extra"] = copy.deepcopy(self.extra)
        return out

    @classmethod
    def from_wire(cls, data: dict) -> "Resources":
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})
