"""The names of the code plugins installed where this process runs, and the nearest one to a
misspelled name: the supervisor refuses an unknown code at submit for a driver whose agents run
this installation (the local driver), instead of letting the job fail when it starts."""

from __future__ import annotations

import difflib
import functools
from importlib.metadata import entry_points

GROUP = "jobvisor.codes"  # the entry-point group of code plugins (job_cmd.codes.registry loads them)


@functools.cache
def installed_codes() -> frozenset[str]:
    return frozenset(ep.name for ep in entry_points(group=GROUP))


def unknown_code_message(name: str, known: frozenset[str]) -> str:
    """'unknown code 'dmeo'; did you mean 'demo'? installed codes: demo, python, shell'."""
    close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown code {name!r}{hint} (installed codes: {', '.join(sorted(known)) or 'none'})"
