"""Times on the wire: ISO 8601 UTC strings (`2026-12-05T08:30:26.123Z`) for every timestamp
the API answers, made from and read back to the Unix times the supervisor keeps internally
(floats are cheap to store and compare; strings are what a person and every JSON tool read)."""

from __future__ import annotations

import datetime
import functools
import math
import time

UTC = datetime.timezone.utc


@functools.lru_cache(maxsize=64)
def _second(seconds: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))


def iso(ts: float | None) -> str | None:
    """A Unix time as ISO 8601 UTC to the millisecond with a `Z`; None stays None.

    Every event on the stream carries one (tens of thousands a second under a burst), and
    nearly all of a burst's fall in a few seconds: the date and time of the second is cached,
    the milliseconds appended. The digits are datetime's: microseconds rounded half to even,
    then cut to milliseconds."""
    if ts is None:
        return None
    seconds = math.floor(ts)
    micros = round((ts - seconds) * 1e6)
    if micros >= 1_000_000:
        seconds, micros = seconds + 1, micros - 1_000_000
    return f"{_second(seconds)}.{micros // 1000:03d}Z"


def parse_iso(text: str) -> datetime.datetime:
    """An ISO 8601 time as an aware datetime; one without an offset is taken as UTC (what the
    API answers). ValueError if it is not a time."""
    at = datetime.datetime.fromisoformat(text)
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def unix_of(text: str) -> float:
    """An ISO 8601 time as a Unix time (for comparing the API's times)."""
    return parse_iso(text).timestamp()
