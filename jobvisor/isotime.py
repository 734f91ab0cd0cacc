"""Times on the wire: ISO 8601 UTC strings (`2026-12-05T08:30:26.123Z`) for every timestamp
the API answers, made from and read back to the Unix times the supervisor keeps internally
(floats are cheap to store and compare; strings are what a person and every JSON tool read)."""

from __future__ import annotations

import datetime
import functools

UTC = datetime.timezone.utc


@functools.lru_cache(maxsize=1024)  # a batch of jobs shares its times
def iso(ts: float | None) -> str | None:
    """A Unix time as ISO 8601 UTC to the millisecond with a `Z`; None stays None."""
    if ts is None:
        return None
    return datetime.datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_iso(text: str) -> datetime.datetime:
    """An ISO 8601 time as an aware datetime; one without an offset is taken as UTC (what the
    API answers). ValueError if it is not a time."""
    at = datetime.datetime.fromisoformat(text)
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def unix_of(text: str) -> float:
    """An ISO 8601 time as a Unix time (for comparing the API's times)."""
    return parse_iso(text).timestamp()
