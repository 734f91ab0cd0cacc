"""A job's resources: sizes and times past what the wire carries (or int() reads) are a 400
naming the field, never an exception further on (found with the gateway's fuzzing)."""

from __future__ import annotations

import math

import msgpack
import pytest

from jobvisor.errors import InvalidRequest
from jobvisor.resources import MAX_MEMORY, Resources


@pytest.mark.parametrize("resources, field, words", [
    ({"memory": "99999999999999999T"}, "resources.memory", "at most"),
    ({"memory": "9" * 400 + "G"}, "resources.memory", "at most"),
    ({"memory": MAX_MEMORY + 1}, "resources.memory", "at most"),
    ({"memory": 0}, "resources.memory", "positive"),
    ({"walltime": "9" * 5000 + "-00:00:00"}, "resources.walltime", "too long"),
    ({"walltime": math.inf}, "resources.walltime", "finite"),
    ({"walltime": math.nan}, "resources.walltime", "finite"),
])
def test_out_of_range_is_invalid_naming_the_field(resources, field, words):
    with pytest.raises(InvalidRequest, match=words) as info:
        Resources.parse(resources)
    assert info.value.field == field


def test_the_largest_values_still_pack():
    parsed = Resources.parse({"memory": MAX_MEMORY, "walltime": "99999-23:59:59", "cpus": 2})
    assert parsed.memory == MAX_MEMORY and parsed.walltime == 99999 * 86400 + 86399
    wire = parsed.to_wire()
    assert msgpack.unpackb(msgpack.packb(wire)) == wire
    assert Resources.parse({"memory": "1.5G"}).memory == 1536 * 1024**2


@pytest.mark.parametrize("text, seconds", [("1h30m", 5400), ("90m", 5400), ("2d", 172800), ("45s", 45),
                                           ("1H 30M", 5400), ("01:30:00", 5400), ("90", 90), (90, 90)])
def test_a_walltime_takes_units_as_a_timer_does(text, seconds):
    assert Resources.parse({"walltime": text}).walltime == seconds


@pytest.mark.parametrize("text", ["x-01:00:00", "1:2:3:4", "ninety", "1-aa:00:00", "30m1h"])
def test_a_walltime_in_no_form_gets_the_one_message(text):
    with pytest.raises(InvalidRequest) as info:
        Resources.parse({"walltime": text})
    assert info.value.detail == f"walltime {text!r} is not HH:MM:SS, MM:SS, D-HH:MM:SS, units (1h30m, 90m, 2d) or seconds"
    assert info.value.field == "resources.walltime"
