"""Which JSON values can cross jobvisor's wire: the check every request body passes first.

A user's JSON (a job's params, an analysis's args, a login) is parsed by the gateway, packed
with msgpack to the supervisor and on to an agent, and shown again as JSON. Some values JSON
can hold cannot make that trip, and none of them may reach a packer, where they fail late and
far from their cause (a submit answered 500, an analysis op lost with the frame that carried
it until its timeout):

- integers outside [-2**63, 2**64 - 1]: JSON numbers have no size, msgpack's have 64 bits;
- NaN and the infinities (Python's json reads them): they pack, but are not JSON, so the
  job's params could no longer be shown;
- strings holding a lone surrogate (JSON's `"\\ud800"`): not UTF-8, so they do not pack;
- values nested deeper than `MAX_DEPTH`: msgpack's packer refuses about 1,000 levels, and
  every layer (the message, the job, the frame) adds a few;
- anything that is not a JSON value at all (bytes, objects), and map keys that are not strings.

`check_wire_value(value, field)` raises `InvalidRequest` naming the path of the first such
value (`jobs[0].params.args.x`), so the gateway answers 400 at once. The supervisor may call it
too, as a second line of defence for requests that did not come through this gateway.
"""

from __future__ import annotations

import json
import math
from typing import Any

from jobvisor.errors import InvalidRequest

MIN_INT = -(2**63)
MAX_INT = 2**64 - 1
MAX_DEPTH = 64


def check_wire_value(value: Any, field: str) -> None:
    """Raise `InvalidRequest` (its `field` the path below `field`) unless `value` is a JSON
    value that msgpack packs and that reads back as the same JSON."""
    _check(value, field, 0)


def join_path(field: str, key: str | int) -> str:
    """`field` and one step below it: `params.args`, `params.argv[2]`, `args["a b"]`."""
    if isinstance(key, int):
        return f"{field}[{key}]"
    if key.isidentifier():
        return f"{field}.{key}" if field else key
    return f"{field}[{json.dumps(key)}]"


def _check(value: Any, field: str, depth: int) -> None:
    kind = type(value)
    if value is None or kind is bool:
        return
    if kind is int:
        if not MIN_INT <= value <= MAX_INT:
            raise InvalidRequest(
                f"{field or 'the value'} is a number too large for 64 bits; whole numbers must be "
                f"from {MIN_INT} to {MAX_INT} (send a larger one as a string)",
                field=field or None,
            )
        return
    if kind is float:
        if not math.isfinite(value):
            name = "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
            raise InvalidRequest(f"{field or 'the value'} is {name}, which JSON cannot carry", field=field or None)
        return
    if kind is str:
        _check_text(value, field)
        return
    if depth >= MAX_DEPTH:
        raise InvalidRequest(f"{field or 'the value'} is nested deeper than {MAX_DEPTH} levels", field=field or None)
    if kind is list or kind is tuple:
        for index, item in enumerate(value):
            _check(item, join_path(field, index), depth + 1)
        return
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str:
                raise InvalidRequest(f"{field or 'the value'} has a key {key!r} that is not a string", field=field or None)
            _check_text(key, field)
            _check(item, join_path(field, key), depth + 1)
        return
    raise InvalidRequest(f"{field or 'the value'} is a {kind.__name__}, not a JSON value", field=field or None)


def _check_text(text: str, field: str) -> None:
    if text.isascii():
        return
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidRequest(
            f"{field or 'the value'} holds a lone surrogate ({text[exc.start]!r} at {exc.start}), which is not UTF-8",
            field=field or None,
        ) from None


def loads_json(raw: bytes, what: str = "request body", hint: str = "") -> Any:
    """`raw` as a JSON value, or InvalidRequest on the body saying what is wrong and where
    (`what`: how the message names it; `hint`: a last word, such as another format to send)."""
    try:
        return json.loads(raw)
    except RecursionError:
        raise InvalidRequest(f"{what} is nested too deeply", field="body") from None
    except UnicodeDecodeError as exc:
        raise InvalidRequest(f"{what} is not UTF-8: {exc}", field="body") from None
    except json.JSONDecodeError as exc:
        raise InvalidRequest(
            f"{what} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}{hint}", field="body",
        ) from None
