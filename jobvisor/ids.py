"""Typed ids, so a job id is never confused with a user name across module boundaries."""

from __future__ import annotations

import os
import secrets
import time
from typing import NewType

JobId = NewType("JobId", str)
AgentId = NewType("AgentId", str)
UserId = NewType("UserId", str)
OpId = NewType("OpId", str)

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lower case


def _b32(value: int, width: int) -> str:
    chars = []
    for _ in range(width):
        value, rem = divmod(value, 32)
        chars.append(_ALPHABET[rem])
    return "".join(reversed(chars))


def _sortable_id() -> str:
    """A 20-character id that sorts by creation time (ms) then randomly: ULID-like.

    Sortable ids keep the jobs table's primary key index append-mostly and let
    `ORDER BY id` mean `ORDER BY creation time` without another index.
    """
    millis = time.time_ns() // 1_000_000
    return _b32(millis, 10) + _b32(int.from_bytes(os.urandom(7), "big") >> 6, 10)


def new_job_id() -> JobId:
    return JobId("j" + _sortable_id())


def new_workflow_id() -> str:
    """A workflow's id (and a published version's): sortable by creation, like a job's."""
    return "w" + _sortable_id()
def new_job_ids(count: int) -> list[JobId]:
    """`count` new job ids that sort in the order given (the elements of a job array, so a
    listing by id shows them by index): one millisecond's prefix, then consecutive numbers
    from a random start."""
    millis = time.time_ns() // 1_000_000
    start = int.from_bytes(os.urandom(7), "big") >> 7  # 49 random bits: room to count up in 50
    prefix = "j" + _b32(millis, 10)
    return [JobId(prefix + _b32(start + i, 10)) for i in range(count)]


def new_agent_id() -> AgentId:
    return AgentId("a" + _sortable_id())


def new_op_id() -> OpId:
    return OpId("o" + secrets.token_hex(8))


def is_valid_job_id(value: str) -> bool:
    return len(value) == 21 and value[0] == "j" and all(c in _ALPHABET for c in value[1:])


def new_timer_id() -> str:
    return "t" + _sortable_id()
