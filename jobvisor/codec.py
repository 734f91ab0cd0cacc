"""The codec of the wire protocol: declared message types to msgpack and back.

A message is a frozen dataclass with a `TYPE` tag (`jobvisor.protocol`'s modules declare them
all; `jobvisor.protocol.registry` registers them here). On the wire it is a msgpack map with
the tag under "t"; a frame is an array of them. Decoding checks every field against its
declared type (typed ids as the strings they name, enums as their values, nested messages),
with checkers built once per type: thousands of messages a second go through here. Anything
malformed, unknown or too large raises `ProtocolError`.
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Union

import msgpack

from jobvisor.errors import MessageTooLarge, ProtocolError
from jobvisor.limits import MAX_MESSAGE_BYTES

DEFAULT_MAX_MESSAGE_BYTES = MAX_MESSAGE_BYTES  # the name codecs' callers know (see jobvisor.limits)


@dataclass(frozen=True, slots=True)
class Message:
    TYPE: ClassVar[str] = ""

_REGISTRY: dict[str, type[Message]] = {}
_CHECKERS: dict[type, list[tuple[str, Any, bool]]] = {}


def message_types() -> dict[str, type[Message]]:
    """Every registered message type by its tag."""
    return dict(_REGISTRY)


def register(*classes: type[Message]) -> None:
    for cls in classes:
        _REGISTRY[cls.TYPE] = cls




def union_members(tp: Any) -> tuple[Any, ...]:
    origin = typing.get_origin(tp)
    if origin is Union or origin is types.UnionType:
        return typing.get_args(tp)
    return (tp,)




_WIRE_PLANS: dict[type, tuple[tuple[str, bool], ...]] = {}


def _may_hold_message(tp: Any) -> bool:
    """Whether a field of this declared type can hold a message (or a list of them)."""
    if tp is Any:
        return True
    for member in union_members(tp):
        if isinstance(member, type) and issubclass(member, Message):
            return True
        if typing.get_origin(member) is list and any(_may_hold_message(a) for a in typing.get_args(member)):
            return True
    return False


def _wire_plan(cls: type[Message]) -> tuple[tuple[str, bool], ...]:
    """Each field's name, and whether its value must be looked at for nested messages. Built
    once per class from the declarations: most fields are plain, and skipping their checks
    halves the cost of encoding a report (thousands a second go through here)."""
    hints = typing.get_type_hints(cls)
    plan = _WIRE_PLANS[cls] = tuple((f.name, _may_hold_message(hints[f.name])) for f in dataclasses.fields(cls))
    return plan


def to_wire(message: Message) -> dict:
    """A message as a msgpack-ready dict, nested messages included."""
    plan = _WIRE_PLANS.get(type(message)) or _wire_plan(type(message))
    out: dict[str, Any] = {"t": message.TYPE}
    for name, nested in plan:
        value = getattr(message, name)
        if nested:
            if isinstance(value, Message):
                value = to_wire(value)
            elif type(value) is list and value and isinstance(value[0], Message):
                value = [to_wire(v) for v in value]
        out[name] = value
    return out


Checker = Callable[[Any, str], Any]


def _fail(where: str, what: str) -> ProtocolError:
    return ProtocolError(f"{where} {what}")


def _compile(tp: Any) -> Checker:
    """A function that validates (and converts nested messages of) one field's value.

    Built once per field type, so decoding costs a few calls per field rather than a walk
    over the type annotations each time (thousands of messages a second go through here)."""
    if tp is Any:
        return lambda value, where: value
    supertype = getattr(tp, "__supertype__", None)  # a typed id (NewType): checked as what it names
    if supertype is not None:
        return _compile(supertype)
    members = union_members(tp)
    if len(members) > 1:
        if type(None) in members and len(members) == 2:
            inner = _compile(next(m for m in members if m is not type(None)))
            return lambda value, where: None if value is None else inner(value, where)
        checkers = [_compile(m) for m in members]

        def union(value: Any, where: str) -> Any:
            first: ProtocolError | None = None
            for check in checkers:
                try:
                    return check(value, where)
                except ProtocolError as exc:
                    first = first or exc
            raise ProtocolError(f"{where}: {first}")

        return union
    if tp is type(None):
        def none(value: Any, where: str) -> Any:
            if value is None:
                return None
            raise _fail(where, "must be null")

        return none
    origin = typing.get_origin(tp)
    if origin is list or tp is list:
        args = typing.get_args(tp)
        item = _compile(args[0]) if args else None

        def a_list(value: Any, where: str) -> Any:
            if type(value) is not list:
                raise _fail(where, "must be a list")
            if item is None:
                return value
            return [item(v, f"{where}[{i}]") for i, v in enumerate(value)]

        return a_list
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        by_value = {member.value: member for member in tp}
        choices = ", ".join(repr(v) for v in by_value)

        def a_member(value: Any, where: str) -> Any:
            member = by_value.get(value) if type(value) is str else None
            if member is None:
                raise _fail(where, f"must be one of {choices}")
            return member

        return a_member
    if isinstance(tp, type) and issubclass(tp, Message):
        def message(value: Any, where: str) -> Any:
            if type(value) is not dict:
                raise _fail(where, f"must be a {tp.TYPE} object")
            return _from_dict(tp, value)

        return message
    if tp is float:
        def a_float(value: Any, where: str) -> Any:
            kind = type(value)
            if kind is float:
                return value
            if kind is int:
                return float(value)
            raise _fail(where, "must be a number")

        return a_float
    if tp is int:
        def an_int(value: Any, where: str) -> Any:
            if type(value) is int:
                return value
            raise _fail(where, "must be an integer")

        return an_int
    if isinstance(tp, type):
        def exact(value: Any, where: str) -> Any:
            if isinstance(value, tp):
                return value
            raise _fail(where, f"must be of type {tp.__name__}")

        return exact
    return lambda value, where: value


def _fields_of(cls: type[Message]) -> list[tuple[str, Checker, bool, str]]:
    checker = _CHECKERS.get(cls)
    if checker is None:
        hints = typing.get_type_hints(cls)
        checker = [
            (
                f.name,
                _compile(hints[f.name]),
                f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING,
                f"{cls.TYPE}.{f.name}",
            )
            for f in dataclasses.fields(cls)
        ]
        _CHECKERS[cls] = checker
    return checker


def _from_dict(cls: type[Message], data: dict) -> Message:
    kwargs = {}
    for name, check, required, where in _fields_of(cls):
        if name in data:
            kwargs[name] = check(data[name], where)
        elif required:
            raise ProtocolError(f"{cls.TYPE} message is missing field {name!r}")
    return cls(**kwargs)


def from_wire(data: Any, allowed: frozenset[str] | None = None) -> Message:
    """Build the message a decoded dict describes; ProtocolError if it is not one we accept."""
    if not isinstance(data, dict):
        raise ProtocolError("a message must be a map with a 't' type tag")
    tag = data.get("t")
    cls = _REGISTRY.get(tag) if isinstance(tag, str) else None
    if cls is None or (allowed is not None and tag not in allowed):
        raise ProtocolError(f"unknown message type {tag!r}")
    return _from_dict(cls, data)


def pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def unpack(data: bytes, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> Any:
    if len(data) > max_bytes:
        raise MessageTooLarge(f"message of {len(data)} bytes is over the limit of {max_bytes}")
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=False)
    except Exception as exc:  # msgpack raises several unrelated types
        raise ProtocolError(f"not a msgpack message: {exc}") from exc


def encode_frame(messages: list[Message]) -> bytes:
    return pack([to_wire(m) for m in messages])


def decode_frame(
    data: bytes, allowed: frozenset[str], max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
) -> tuple[list[Message], list[ProtocolError]]:
    """Decode a websocket frame. Bad messages inside a good frame are returned as errors so the
    good ones are still handled; a frame that is not msgpack at all raises."""
    raw = unpack(data, max_bytes)
    if not isinstance(raw, list):
        raw = [raw]
    messages: list[Message] = []
    errors: list[ProtocolError] = []
    for item in raw:
        try:
            messages.append(from_wire(item, allowed))
        except ProtocolError as exc:
            errors.append(exc)
    return messages, errors


def encode(message: Message) -> bytes:
    return pack(to_wire(message))


def decode(data: bytes, allowed: frozenset[str] | None = None, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> Message:
    return from_wire(unpack(data, max_bytes), allowed)
