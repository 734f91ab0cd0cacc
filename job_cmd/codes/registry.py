"""Finding code plugins: the `jobvisor.codes` entry-point group, looked up once per process
(importlib.metadata scans every installed distribution, which is slow)."""

from __future__ import annotations

import functools
import logging
from importlib.metadata import EntryPoint, entry_points

from job_cmd.codes.base import Code
from job_cmd.errors import UnknownCode

from jobvisor.code_names import GROUP  # noqa: E402  (one name for the group, where the supervisor reads it too)

logger = logging.getLogger(__name__)
_instances: dict[str, Code] = {}


@functools.cache
def _entry_points() -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=GROUP)}


def installed_codes() -> list[str]:
    return sorted(_entry_points())


def get_code(name: str) -> Code:
    """The (shared) instance of the code plugin `name`; `UnknownCode` lists what is installed."""
    code = _instances.get(name)
    if code is not None:
        return code
    ep = _entry_points().get(name) if isinstance(name, str) else None
    if ep is None:
        installed = ", ".join(installed_codes()) or "none (is jobvisor installed?)"
        raise UnknownCode(f"unknown code {name!r}; installed codes: {installed}")
    try:
        cls = ep.load()
        code = cls()
    except Exception as exc:  # a broken plugin must not take the agent down
        logger.exception("code plugin %s (%s) cannot be loaded", name, ep.value)
        raise UnknownCode(f"code {name!r} is installed but cannot be loaded: {type(exc).__name__}: {exc}") from exc
    if not isinstance(code, Code):
        raise UnknownCode(f"code {name!r} ({ep.value}) is not a job_cmd Code")
    _instances[name] = code
    return code


def clear_cache() -> None:
    """Forget looked-up plugins (tests that install plugins use this)."""
    _entry_points.cache_clear()
    _instances.clear()
