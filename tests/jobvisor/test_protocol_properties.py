"""Property tests of the codec (hypothesis): every declared message type round-trips, and no
input, however broken or large, makes decoding raise anything but `ProtocolError` (the edges
turn that into an error reply; any other exception would take a handler down with it)."""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from typing import Any, Union

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jobvisor.codec import Message, decode, decode_frame, encode, encode_frame, from_wire, message_types, pack, to_wire
from jobvisor.errors import MessageTooLarge, ProtocolError
from jobvisor.protocol.registry import ALLOWED_FROM_AGENT, ALLOWED_GATEWAY_REQUESTS, ALLOWED_TO_AGENT
from jobvisor.wire_values import MAX_INT, MIN_INT

PROPERTY = settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
TAGS = message_types()
MESSAGE_TYPES: list[type[Message]] = sorted(TAGS.values(), key=lambda cls: cls.TYPE)

# what msgpack carries and gives back equal: 64-bit ints, finite floats (NaN != NaN), UTF-8
# text, bytes; lists (tuples come back as lists), maps with string keys
LEAVES = (
    st.none() | st.booleans() | st.integers(MIN_INT, MAX_INT) | st.floats(allow_nan=False)
    | st.text(max_size=20) | st.binary(max_size=20)
)
VALUES = st.recursive(
    LEAVES,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


def _strategy(tp: Any) -> st.SearchStrategy:
    """Values of a declared field type, as the codec must carry them."""
    if tp is Any:
        return VALUES
    if hasattr(tp, "__supertype__"):  # a typed id: values of what it names
        return _strategy(tp.__supertype__)
    origin = typing.get_origin(tp)
    if origin is Union or origin is types.UnionType:
        return st.one_of(*(_strategy(member) for member in typing.get_args(tp)))
    if tp is type(None):
        return st.none()
    if origin is list or tp is list:
        args = typing.get_args(tp)
        return st.lists(_strategy(args[0]) if args else VALUES, max_size=3)
    if tp is dict:
        return st.dictionaries(st.text(max_size=8), VALUES, max_size=4)
    if isinstance(tp, type) and issubclass(tp, Message):
        return message_of(tp)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):  # a closed set: states, io actions
        return st.sampled_from(list(tp))
    simple = {
        str: st.text(max_size=30), int: st.integers(MIN_INT, MAX_INT), float: st.floats(allow_nan=False),
        bool: st.booleans(), bytes: st.binary(max_size=64),
    }
    return simple[tp]


def message_of(cls: type[Message]) -> st.SearchStrategy:
    hints = typing.get_type_hints(cls)
    fields = {f.name: st.deferred(lambda tp=hints[f.name]: _strategy(tp)) for f in dataclasses.fields(cls)}
    return st.builds(cls, **fields)


ANY_MESSAGE = st.sampled_from(MESSAGE_TYPES).flatmap(message_of)


@PROPERTY
@given(ANY_MESSAGE)
def test_every_message_type_round_trips(message):
    assert decode(encode(message)) == message


@PROPERTY
@given(st.lists(ANY_MESSAGE, max_size=5))
def test_frames_round_trip(messages):
    decoded, errors = decode_frame(encode_frame(messages), frozenset(TAGS))
    assert decoded == messages and errors == []


@PROPERTY
@given(st.binary(max_size=256))
def test_garbage_bytes_are_a_protocol_error_or_a_message(data):
    for allowed in (None, ALLOWED_FROM_AGENT, ALLOWED_TO_AGENT, ALLOWED_GATEWAY_REQUESTS):
        try:
            assert isinstance(decode(data, allowed), Message)
        except ProtocolError:
            pass
    try:
        messages, errors = decode_frame(data, ALLOWED_FROM_AGENT)
    except ProtocolError:
        return
    assert all(isinstance(m, Message) for m in messages) and all(isinstance(e, ProtocolError) for e in errors)


def _corrupt(draw: st.DrawFn) -> dict:
    """A map that names a real message type, with some fields of the wrong type or missing."""
    cls = draw(st.sampled_from(MESSAGE_TYPES))
    wire = to_wire(draw(message_of(cls)))
    names = [f.name for f in dataclasses.fields(cls)]
    for name in draw(st.lists(st.sampled_from(names), max_size=3)) if names else ():
        if draw(st.booleans()):
            wire.pop(name, None)
        else:
            wire[name] = draw(VALUES | st.sampled_from([{"t": t} for t in TAGS]))
    return wire


@PROPERTY
@given(st.composite(_corrupt)())
def test_malformed_fields_are_a_protocol_error_or_a_message(wire):
    try:
        message = from_wire(wire)
    except ProtocolError:
        return
    assert isinstance(message, Message)
    assert decode(encode(message)) == message  # what was accepted is a whole message


@PROPERTY
@given(ANY_MESSAGE)
def test_a_message_over_the_limit_is_message_too_large(message):
    data = encode(message)
    try:
        decode(data, max_bytes=len(data) - 1)
    except MessageTooLarge as exc:
        assert str(len(data)) in str(exc)
    else:
        raise AssertionError("a message over the limit was decoded")
    try:
        decode_frame(pack([to_wire(message)] * 2), frozenset(TAGS), max_bytes=len(data))
    except MessageTooLarge:
        pass
    else:
        raise AssertionError("a frame over the limit was decoded")
