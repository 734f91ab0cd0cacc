"""The job array syntax (sbatch --array's) and the retry fields of a job object."""

from __future__ import annotations

import pytest

from jobvisor.errors import InvalidRequest
from jobvisor.job_arrays import format_array, parse_array
from jobvisor.job_spec import override_params, parse_job_spec, parse_retry_on


@pytest.mark.parametrize("text, indexes, cap", [
    ("1-5", [1, 2, 3, 4, 5], 0),
    ("1,3,5-9", [1, 3, 5, 6, 7, 8, 9], 0),
    ("0-10:5", [0, 5, 10], 0),
    ("1-100%10", list(range(1, 101)), 10),
    (" 7 ", [7], 0),
])
def test_parse(text, indexes, cap):
    spec = parse_array(text, max_count=1000)
    assert list(spec.indexes) == indexes and spec.cap == cap


@pytest.mark.parametrize("text, message", [
    ("", "must be a string"), ("1-", "is not N"), ("5-1", "ends before"), ("1-3,2", "index 2 is given twice"),
    ("1-3%0", "cap"), ("1-3%x", "cap"), ("0-10:0", "step"), ("1-2000", "at most 1000"), ("a", "is not N"),
])
def test_parse_errors_name_the_field(text, message):
    with pytest.raises(InvalidRequest, match=message) as err:
        parse_array(text, max_count=1000, field="jobs[0].array")
    assert err.value.field == "jobs[0].array"


def test_format_is_the_shortest_form_and_parses_back():
    for text in ("1-100%10", "1,3,5-9", "0-10:5", "1-7:2,10-11", "4"):
        spec = parse_array(text, max_count=1000)
        assert str(spec) == text and parse_array(str(spec), max_count=1000) == spec
    assert format_array([1, 2, 4, 8]) == "1-2,4,8"


def test_a_big_array_parses_quickly_enough_to_be_one_batch():
    assert parse_array("0-99999", max_count=100_000).count == 100_000


def test_array_only_where_allowed_and_retry_on_checked():
    job = {"code": "shell", "params": {"argv": ["true"]}, "array": "1-3%2", "retry_on": "timed_out,failed"}
    spec = parse_job_spec(job, max_array=10)
    assert spec.array == "1-3%2" and spec.retry_on == ["failed", "timed_out"]
    with pytest.raises(InvalidRequest, match="only allowed for a job submitted alone") as err:
        parse_job_spec(job, "jobs[2]")
    assert err.value.field == "jobs[2].array"
    assert parse_retry_on(None) == [] and parse_retry_on(["lost", "lost"]) == ["lost"]
    with pytest.raises(InvalidRequest, match="'completed' is not one of"):
        parse_retry_on(["completed"])
    with pytest.raises(InvalidRequest, match="list of states"):
        parse_retry_on(3)


def test_override_params_by_dotted_keys():
    params = {"entry": "m:f", "args": {"n": 1}}
    assert override_params(params, {"args.n": 2, "args.deep.x": "y"}) == {"entry": "m:f", "args": {"n": 2, "deep": {"x": "y"}}}
    assert params == {"entry": "m:f", "args": {"n": 1}}  # unchanged
    with pytest.raises(InvalidRequest, match="entry is not an object") as err:
        override_params(params, {"entry.x": 1})
    assert err.value.field == "params.entry.x"
