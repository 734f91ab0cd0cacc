"""When a timer fires: once at a time, every interval, or on a cron expression. Pure functions
of their text and a Unix time (UTC), so they are tested without a clock.

    parse_at("2026-12-05T10:00:00Z")   -> Unix time (a time without a zone is UTC)
    parse_interval("1h30m")             -> 5400.0 (also "90", "1.5", "2d", "45s", "1d12h")
    Cron.parse("*/15 9-17 * * mon-fri") -> Cron; .next_after(t) -> the first firing after t

Cron has the five classic fields, in UTC: minute (0-59), hour (0-23), day of month (1-31),
month (1-12 or jan-dec), day of week (0-7 or sun-sat; 0 and 7 are Sunday). Each field is `*`
or a list of `a`, `a-b`, `*/n`, `a-b/n`, `a/n` (from a to the end, every n). When both day
fields are restricted, a day matching either fires (as Vixie cron does). `@hourly`, `@daily`
(`@midnight`), `@weekly`, `@monthly` and `@yearly` (`@annually`) are accepted too. Every
error is an `InvalidRequest` whose `field` is the request's (`at`, `every`, `cron`) and whose
detail names the cron field at fault.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from jobvisor.durations import parse_units
from jobvisor.errors import InvalidRequest

UTC = dt.timezone.utc
MIN_INTERVAL = 1.0  # seconds
MAX_INTERVAL = 366 * 86400.0
SEARCH_YEARS = 5  # a cron expression that does not fire within this many years never will (31 February)



def parse_at(text: str, *, field: str = "at") -> float:
    """An ISO 8601 time as Unix time; without a zone it is UTC."""
    try:
        at = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidRequest(f"{text!r} is not an ISO 8601 time such as 2026-12-05T10:00:00Z", field=field) from None
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return at.timestamp()


def parse_interval(text: str, *, field: str = "every") -> float:
    """Seconds ("90", "1.5") or units d, h, m, s in that order ("1h30m", "2d", "45s")."""
    raw = text.strip().lower().replace(" ", "")
    seconds: float | None = None
    try:
        seconds = float(raw)
    except ValueError:
        seconds = parse_units(raw)
    if seconds is None or seconds != seconds:
        raise InvalidRequest(f"{text!r} is not an interval: seconds (90) or units d, h, m, s (1h30m)", field=field)
    if not MIN_INTERVAL <= seconds <= MAX_INTERVAL:
        raise InvalidRequest(f"the interval must be from {MIN_INTERVAL:g} s to {MAX_INTERVAL / 86400:g} days", field=field)
    return seconds


def next_every(anchor: float, every: float, now: float) -> float:
    """The first firing after `now` of a timer firing at anchor, anchor + every, ... (missed
    ones are not counted: the caller fires once for all of them)."""
    if now < anchor:
        return anchor
    return anchor + (int((now - anchor) // every) + 1) * every


# --------------------------------------------------------------------------- cron

@dataclass(frozen=True)
class _Field:
    name: str
    lo: int
    hi: int
    names: tuple[str, ...] = ()  # names[i] stands for lo + i
    allowed: str = ""  # how the field's values are written, for errors


_FIELDS = (
    _Field("minute", 0, 59, allowed="0-59"),
    _Field("hour", 0, 23, allowed="0-23"),
    _Field("day of month", 1, 31, allowed="1-31"),
    _Field("month", 1, 12, ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"),
           allowed="1-12 or jan-dec"),
    _Field("day of week", 0, 7, ("sun", "mon", "tue", "wed", "thu", "fri", "sat", "sun"), allowed="0-7 or sun-sat"),
)
_ORDINALS = ("1st", "2nd", "3rd", "4th", "5th")
_MACROS = {
    "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *", "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *",
}


def _bad(index: int, detail: str) -> InvalidRequest:
    spec = _FIELDS[index]
    return InvalidRequest(f"cron: the {spec.name} field ({_ORDINALS[index]}) {detail}", field="cron")


def _value(index: int, text: str) -> int:
    spec = _FIELDS[index]
    lowered = text.lower()
    if lowered in spec.names:
        return spec.lo + spec.names.index(lowered)
    if not text.isdigit():
        raise _bad(index, f"has {text!r}, which is not a value ({spec.allowed})")
    value = int(text)
    if not spec.lo <= value <= spec.hi:
        raise _bad(index, f"has {value}, out of range {spec.lo}-{spec.hi}")
    return value


def _parse_field(index: int, text: str) -> frozenset[int]:
    spec = _FIELDS[index]
    values: set[int] = set()
    for item in text.split(","):
        if not item:
            raise _bad(index, f"has an empty item in {text!r}")
        part, slash, step_text = item.partition("/")
        step = 1
        if slash:
            if not step_text.isdigit() or int(step_text) == 0:
                raise _bad(index, f"has step {step_text!r} in {item!r}; a step is a whole number of at least 1")
            step = int(step_text)
        if part == "*":
            lo, hi = spec.lo, spec.hi
        elif "-" in part:
            first, _, last = part.partition("-")
            lo, hi = _value(index, first), _value(index, last)
            if lo > hi:
                raise _bad(index, f"has the range {item!r}, which runs backwards")
        else:
            lo = _value(index, part)
            hi = spec.hi if slash else lo
        values.update(range(lo, hi + 1, step))
    if spec.name == "day of week" and 7 in values:
        values.discard(7)
        values.add(0)
    return frozenset(values)


@dataclass(frozen=True)
class Cron:
    """A parsed 5-field cron expression (UTC)."""

    text: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    days_restricted: bool
    weekdays_restricted: bool

    @classmethod
    def parse(cls, text: str) -> "Cron":
        expanded = _MACROS.get(text.strip().lower(), text)
        parts = expanded.split()
        if len(parts) != 5:
            raise InvalidRequest(
                f"cron needs 5 fields (minute hour day-of-month month day-of-week), not {len(parts)}: {text!r}",
                field="cron",
            )
        fields = [_parse_field(i, part) for i, part in enumerate(parts)]
        cron = cls(text.strip(), *fields, days_restricted=not parts[2].startswith("*"),
                   weekdays_restricted=not parts[4].startswith("*"))
        if cron.next_after(dt.datetime(2000, 1, 1, tzinfo=UTC).timestamp()) is None:
            raise InvalidRequest(f"cron {text!r} never fires: no month has that day", field="cron")
        return cron

    def _day_matches(self, day: dt.datetime) -> bool:
        in_month = day.day in self.days
        in_week = (day.isoweekday() % 7) in self.weekdays
        if self.days_restricted and self.weekdays_restricted:
            return in_month or in_week
        return in_month and in_week

    def next_after(self, ts: float) -> float | None:
        """The first minute after `ts` that the expression matches (None: none for years)."""
        t = dt.datetime.fromtimestamp(ts, UTC).replace(second=0, microsecond=0) + dt.timedelta(minutes=1)
        end = t.year + SEARCH_YEARS
        while t.year <= end:
            if t.month not in self.months:
                t = (t.replace(day=1, hour=0, minute=0) + dt.timedelta(days=32)).replace(day=1)
                continue
            if not self._day_matches(t):
                t = t.replace(hour=0, minute=0) + dt.timedelta(days=1)
                continue
            if t.hour not in self.hours:
                t = t.replace(minute=0) + dt.timedelta(hours=1)
                continue
            later = [m for m in self.minutes if m >= t.minute]
            if not later:
                t = t.replace(minute=0) + dt.timedelta(hours=1)
                continue
            return t.replace(minute=min(later)).timestamp()
        return None
