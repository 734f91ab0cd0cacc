"""`KEY=VALUE` options (`resubmit --param`, `analysis --arg`): one way to read them, so a value
means the same in every command: JSON when it is JSON (3, true, [1,2], "x"), else a string."""

from __future__ import annotations

import json
from typing import Any

from jobvisor.cli.errors import CliError

USAGE = 2


def parse_key_values(items: list[str], option: str, hint: str = "") -> dict[str, Any]:
    """`["n=3", "name=x"]` -> {"n": 3, "name": "x"}; an item without `=` or a key is a usage
    error naming the option (`hint` adds how a key may look)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise CliError(f"{option} {item!r}: expected KEY=VALUE" + (f" ({hint})" if hint else ""), status=USAGE)
        try:
            out[key] = json.loads(raw)
        except ValueError:
            out[key] = raw
    return out
