"""The names of the code plugins installed where this process runs, and the nearest one to a
misspelled name: the supervisor refuses an unknown code at submit for a driver whose agents run
this installation (the local driver), instead of letting the job fail when it starts."""

from __future__ import annotations

import functools
from importlib.metadata import entry_points

from jobvisor.suggest import unknown_name

GROUP = "jobvisor.codes"  # the entry-point group of code plugins (job_cmd.codes.registry loads them)


@functools.cache
def installed_codes() -> frozenset[str]:
    return frozenset(ep.name for ep in entry_points(group=GROUP))


def unknown_code_message(name: str, known: frozenset[str]) -> str:
    """'unknown code 'dmeo'; did you mean 'demo'? (installed codes: demo, python, shell)'."""
    return unknown_name("code", name, sorted(known), "installed codes")
