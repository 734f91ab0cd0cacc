"""`check_wire_value`: it passes exactly the JSON values that msgpack packs and gives back
equal, and when it refuses one, its `field` leads to the value at fault."""

from __future__ import annotations

import json
import math
import re
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jobvisor.errors import InvalidRequest
from jobvisor.wire_values import MAX_DEPTH, MAX_INT, MIN_INT, check_wire_value, join_path

PROPERTY = settings(max_examples=300, deadline=None, database=None)

# what json.loads can give: unbounded ints, NaN and the infinities, any code point (lone
# surrogates too), and the nearest bounds
NUMBERS = st.integers() | st.sampled_from([MIN_INT, MAX_INT, MIN_INT - 1, MAX_INT + 1]) | st.floats()
TEXT = st.text(st.characters(codec=None, categories=None), max_size=6)
JSON = st.recursive(
    st.none() | st.booleans() | NUMBERS | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=10,
)
_STEP = re.compile(r'\.([^.\[]+)|\[(\d+)\]|\[("(?:[^"\\]|\\.)*")\]')


def _at(value: Any, path: str, root: str) -> Any:
    """The part of `value` that `path` (below `root`) names."""
    rest = path[len(root):]
    while rest:
        step = _STEP.match(rest) if rest[0] in ".[" else re.match(r"([^.\[]+)", rest)
        assert step is not None, f"cannot read {rest!r} of {path!r}"
        name, index, quoted = (step.groups() + (None, None))[:3]
        if index is not None:
            value = value[int(index)]
        else:
            value = value[json.loads(quoted) if quoted is not None else name]
        rest = rest[step.end():]
    return value


def _packs_back_equal(value: Any) -> bool:
    try:
        json.dumps(value, allow_nan=False)
        return msgpack.unpackb(msgpack.packb(value, use_bin_type=True), raw=False) == value
    except (OverflowError, TypeError, ValueError):
        return False


@PROPERTY
@given(JSON)
def test_passes_exactly_what_msgpack_and_json_carry_back(value):
    try:
        check_wire_value(value, "args")
    except InvalidRequest as exc:
        assert exc.field is not None and exc.field.startswith("args")
        culprit = _at(value, exc.field, "args")
        assert not _packs_back_equal(culprit) or isinstance(culprit, (dict, list))
        return
    assert _packs_back_equal(value)


@PROPERTY
@given(st.lists(st.text(max_size=5) | st.integers(0, 9), max_size=4))
def test_a_path_reads_back(keys):
    value: Any = 2**70
    path = "p"
    for key in reversed(keys):
        value = [0] * key + [value] if isinstance(key, int) else {key: value}
    for key in keys:
        path = join_path(path, key)
    with pytest.raises(InvalidRequest) as info:
        check_wire_value(value, "p")
    assert info.value.field == path and _at(value, path, "p") == 2**70


def test_the_bounds_and_what_lies_past_them():
    check_wire_value({"low": MIN_INT, "high": MAX_INT, "x": 1.5, "s": "é"}, "args")
    for bad, words in ((MIN_INT - 1, "64 bits"), (MAX_INT + 1, "64 bits"), (math.nan, "NaN"),
                       (-math.inf, "-Infinity"), ("\ud800", "surrogate"), (b"x", "not a JSON value")):
        with pytest.raises(InvalidRequest, match=words) as info:
            check_wire_value({"k": [bad]}, "args")
        assert info.value.field == "args.k[0]"
    deep: Any = 1
    for _ in range(MAX_DEPTH + 1):
        deep = [deep]
    with pytest.raises(InvalidRequest, match="deeper"):
        check_wire_value(deep, "")
    with pytest.raises(InvalidRequest, match="not a string") as info:
        check_wire_value({"a": {1: 2}}, "")
    assert info.value.field == "a"
