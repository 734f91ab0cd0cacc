"""Durations written with units, "1h30m", "2d", "90m", "45s": one reading for a timer's
interval and a job's walltime, so the two never disagree on what "1h30m" means."""

from __future__ import annotations

import re

UNIT_SECONDS = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}
_WITH_UNITS = re.compile(r"^(?:(?P<d>\d+)d)?(?:(?P<h>\d+)h)?(?:(?P<m>\d+)m)?(?:(?P<s>\d+(?:\.\d+)?)s)?$")


def parse_units(text: str) -> float | None:
    """Seconds of `text` written as units d, h, m, s in that order (spaces and case ignored);
    None when it is not written so (a bare number included: its unit is the caller's to say)."""
    raw = text.strip().lower().replace(" ", "")
    match = _WITH_UNITS.match(raw)
    if not raw or match is None:
        return None
    return sum(float(value) * UNIT_SECONDS[unit] for unit, value in match.groupdict().items() if value)
