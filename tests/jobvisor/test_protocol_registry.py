"""The registry is the one place that knows every message type. A message declared in a
channel's module but not named in its channel's set would round-trip in unit tests and still
be refused at every socket edge ("unknown message type"); this catches it when it is declared."""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from typing import ClassVar

import jobvisor.protocol
from jobvisor.codec import Message, message_types
from jobvisor.protocol.registry import (
    ALLOWED_EVENTS, ALLOWED_FROM_AGENT, ALLOWED_GATEWAY_REQUESTS, ALLOWED_REPLY, ALLOWED_TO_AGENT,
)


def declared() -> list[type[Message]]:
    """Every message type the protocol's modules declare."""
    found = []
    for info in pkgutil.iter_modules(jobvisor.protocol.__path__):
        module = importlib.import_module(f"{jobvisor.protocol.__name__}.{info.name}")
        found += [
            value for value in vars(module).values()
            if isinstance(value, type) and issubclass(value, Message) and value.__module__ == module.__name__
        ]
    return found


def unregistered(types: list[type[Message]]) -> list[type[Message]]:
    registered = message_types()
    return [cls for cls in types if registered.get(cls.TYPE) is not cls]


def test_every_declared_message_is_registered_under_a_tag_of_its_own() -> None:
    types = declared()
    assert len(types) > 50
    assert unregistered(types) == []
    assert len({cls.TYPE for cls in types}) == len(types), "two messages share a tag"
    assert set(message_types().values()) == set(types)


def test_the_check_sees_a_message_left_out() -> None:
    @dataclass(frozen=True, slots=True)
    class Stray(Message):
        TYPE: ClassVar[str] = "stray"

    assert unregistered([*declared(), Stray]) == [Stray]


def test_no_gateway_request_is_accepted_on_the_agents_socket() -> None:
    agent_side = ALLOWED_TO_AGENT | ALLOWED_FROM_AGENT
    assert ALLOWED_GATEWAY_REQUESTS.isdisjoint(agent_side)
    assert (ALLOWED_REPLY | ALLOWED_EVENTS).isdisjoint(agent_side | ALLOWED_GATEWAY_REQUESTS)
