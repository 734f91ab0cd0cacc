"""Timer schedules: ISO times, intervals, and the cron parser and its next firing (pure)."""

from __future__ import annotations

import datetime as dt

import pytest

from jobvisor.errors import InvalidRequest
from jobvisor.schedule import Cron, next_every, parse_at, parse_interval

UTC = dt.timezone.utc


def at(*args: int) -> float:
    return dt.datetime(*args, tzinfo=UTC).timestamp()


def when(ts: float | None) -> str | None:
    return None if ts is None else dt.datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %a %H:%M")


@pytest.mark.parametrize("expr, after, expected", [
    ("* * * * *", at(2026, 12, 5, 10, 0, 30), "2026-12-05 Sat 10:01"),
    ("*/15 9-17 * * mon-fri", at(2026, 12, 5, 10, 0), "2026-12-07 Mon 09:00"),  # Saturday: to Monday
    ("*/15 9-17 * * 1-5", at(2026, 12, 7, 17, 50), "2026-12-08 Tue 09:00"),
    ("30 2 * * *", at(2026, 12, 5, 2, 30), "2026-12-06 Sun 02:30"),  # strictly after
    ("0 0 29 2 *", at(2026, 3, 1), "2028-02-29 Tue 00:00"),  # the next leap day
    ("0 12 1 jan,jul *", at(2026, 7, 1, 12, 0), "2027-01-01 Fri 12:00"),
    ("0 0 * * 7", at(2026, 12, 5), "2026-12-06 Sun 00:00"),  # 7 is Sunday, as 0 is
    ("0 0 13 * fri", at(2026, 12, 5), "2026-12-11 Fri 00:00"),  # both days restricted: either
    ("5/20 * * * *", at(2026, 12, 5, 10, 26), "2026-12-05 Sat 10:45"),  # 5, 25, 45
    ("0 0 31 * *", at(2026, 11, 1), "2026-12-31 Thu 00:00"),  # November has no 31st
    ("@hourly", at(2026, 12, 5, 10, 0), "2026-12-05 Sat 11:00"),
    ("@weekly", at(2026, 12, 5), "2026-12-06 Sun 00:00"),
])
def test_next_firing(expr, after, expected):
    assert when(Cron.parse(expr).next_after(after)) == expected


@pytest.mark.parametrize("expr, words", [
    ("* * * *", "needs 5 fields"),
    ("60 * * * *", "minute field (1st) has 60, out of range 0-59"),
    ("* 24 * * *", "hour field (2nd) has 24"),
    ("* * 0 * *", "day of month field (3rd) has 0, out of range 1-31"),
    ("* * * 13 *", "month field (4th) has 13"),
    ("* * * * 8", "day of week field (5th) has 8"),
    ("* * * smarch *", "month field (4th) has 'smarch', which is not a value (1-12 or jan-dec)"),
    ("*/0 * * * *", "minute field (1st) has step '0'"),
    ("10-5 * * * *", "runs backwards"),
    ("1,,2 * * * *", "empty item"),
    ("0 0 30 feb *", "never fires"),
])
def test_cron_errors_name_the_field(expr, words):
    with pytest.raises(InvalidRequest) as info:
        Cron.parse(expr)
    assert info.value.field == "cron" and words in info.value.detail


def test_intervals():
    assert parse_interval("1h30m") == 5400 and parse_interval("90") == 90 and parse_interval("1.5") == 1.5
    assert parse_interval("2d") == 172800 and parse_interval("1d12h") == 129600 and parse_interval("45s") == 45
    for bad in ("", "1x", "30m1h", "0.5", "-5", "nan", "400d"):
        with pytest.raises(InvalidRequest) as info:
            parse_interval(bad)
        assert info.value.field == "every"


def test_every_counts_from_its_anchor_and_skips_what_it_missed():
    assert next_every(100.0, 10.0, 95.0) == 100.0
    assert next_every(100.0, 10.0, 100.0) == 110.0
    assert next_every(100.0, 10.0, 1234.5) == 1240.0


def test_iso_times():
    assert parse_at("2026-12-05T10:00:00Z") == at(2026, 12, 5, 10, 0)
    assert parse_at("2026-12-05T11:00:00+01:00") == at(2026, 12, 5, 10, 0)
    assert parse_at("2026-12-05 10:00") == at(2026, 12, 5, 10, 0)  # no zone: UTC
    with pytest.raises(InvalidRequest) as info:
        parse_at("tomorrow")
    assert info.value.field == "at"
