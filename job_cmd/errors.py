"""Errors of job commands, placed in jobvisor's tree (see `jobvisor.errors`).

    jobvisor.errors.InvalidRequest
    ├── InvalidParams     a code's params are wrong; `field` names the offending one
    └── UnknownCode       no installed code plugin has that name (or it cannot be loaded)
"""

from __future__ import annotations

from jobvisor.errors import InvalidRequest


class InvalidParams(InvalidRequest):
    """The params of a job do not fit its code. The message names the field."""

    def __init__(self, detail: str, *, field: str | None = None) -> None:
        super().__init__(detail, field=field)


class UnknownCode(InvalidRequest):
    def __init__(self, detail: str) -> None:
        super().__init__(detail, field="code")
