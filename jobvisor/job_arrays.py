"""Job arrays: `1-100%10`, `1,3,5-9`, `0-99:2` -> the indexes and the cap on how many run at once.

The syntax is `sbatch --array`'s: comma-separated items, each an index `N` or a range `A-B`
with an optional step `A-B:S`, and an optional `%CAP` at the end. Indexes are whole numbers
from 0 to `MAX_ARRAY_INDEX`; duplicates are an error rather than silently merged, so a typo
such as `1-10,5` does not quietly submit fewer jobs than the user counted.

Parsed in the ground so the gateway (400 naming `array`), the supervisor (which expands it)
and the CLI agree on one grammar.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from jobvisor.errors import InvalidRequest

MAX_ARRAY_INDEX = 10_000_000  # sbatch's MaxArraySize is far lower by default; any bound keeps sizes sane
_ITEM = re.compile(r"^(\d+)(?:-(\d+)(?::(\d+))?)?$")


@dataclass(frozen=True, slots=True)
class ArraySpec:
    """An array's element indexes, in submit order, and its cap (0: no cap beyond the driver's)."""

    indexes: tuple[int, ...]
    cap: int = 0

    @property
    def count(self) -> int:
        return len(self.indexes)

    def __str__(self) -> str:
        return format_array(self.indexes, self.cap)


def parse_array(text: object, *, max_count: int, field: str = "array") -> ArraySpec:
    """`text` -> ArraySpec; InvalidRequest naming `field` for anything malformed, for a
    duplicate index, or for more than `max_count` elements."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidRequest("array must be a string such as '1-100', '1,3,5-9', '0-99:2' or '1-100%10'", field=field)
    body, _, cap_text = text.strip().partition("%")
    cap = 0
    if _:
        if not cap_text.isdigit() or int(cap_text) < 1:
            raise InvalidRequest(f"array cap {cap_text!r} must be a whole number >= 1 (as in '1-100%10')", field=field)
        cap = int(cap_text)
    indexes: list[int] = []
    for item in body.split(","):
        match = _ITEM.match(item.strip())
        if match is None:
            raise InvalidRequest(f"array item {item.strip()!r} is not N, A-B or A-B:STEP", field=field)
        first, last, step = match.group(1), match.group(2), match.group(3)
        start = int(first)
        stop = int(last) if last is not None else start
        stride = int(step) if step is not None else 1
        if stride < 1:
            raise InvalidRequest(f"array step in {item.strip()!r} must be >= 1", field=field)
        if stop < start:
            raise InvalidRequest(f"array range {item.strip()!r} ends before it starts", field=field)
        if stop > MAX_ARRAY_INDEX:
            raise InvalidRequest(f"array indexes go up to {MAX_ARRAY_INDEX}", field=field)
        if len(indexes) + (stop - start) // stride + 1 > max_count:
            raise InvalidRequest(f"an array has at most {max_count} elements", field=field)
        indexes.extend(range(start, stop + 1, stride))
    if len(set(indexes)) != len(indexes):
        seen: set[int] = set()
        dup = next(i for i in indexes if i in seen or seen.add(i))  # type: ignore[func-returns-value]
        raise InvalidRequest(f"array index {dup} is given twice", field=field)
    return ArraySpec(tuple(indexes), cap)


def format_array(indexes: tuple[int, ...] | list[int], cap: int = 0) -> str:
    """The shortest `A-B` / `A-B:S` / `N` form of `indexes` (and `%cap`): what is stored and shown."""
    items: list[str] = []
    i, n = 0, len(indexes)
    while i < n:
        start = indexes[i]
        if i + 1 < n and indexes[i + 1] > start:
            step = indexes[i + 1] - start
            j = i + 1
            while j + 1 < n and indexes[j + 1] - indexes[j] == step:
                j += 1
            if step != 1 and j + 1 < n and indexes[j + 1] - indexes[j] == 1:
                j -= 1  # its last index starts a run of consecutive ones: leave it to that run
            if j - i >= 2 or step == 1:
                items.append(f"{start}-{indexes[j]}" + (f":{step}" if step != 1 else ""))
                i = j + 1
                continue
        items.append(str(start))
        i += 1
    return ",".join(items) + (f"%{cap}" if cap else "")
