"""The message of a misspelled name (a code, a state, a driver): what was given, the nearest
known name when one is close, and the known names, worded one way wherever a name is refused."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def unknown_name(what: str, name: str, known: Iterable[str], known_as: str) -> str:
    """"unknown state 'runing'; did you mean 'running'? (states: queued, ...)"."""
    names = list(known)
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown {what} {name!r}{hint} ({known_as}: {', '.join(names) or 'none'})"
