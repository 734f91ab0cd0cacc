"""Errors of job commands, placed in jobvisor's tree (see `jobvisor.errors`).

    jobvisor.errors.InvalidRequest
    ├── InvalidParams     a code's params are wrong; `field` names the offending one
    │                     (defined in jobvisor.errors: the gateway raises it too, at submit)
    └── UnknownCode       no installed code plugin has that name (or it cannot be loaded)
"""

from __future__ import annotations

from jobvisor.errors import InvalidParams, InvalidRequest

__all__ = ["InvalidParams", "UnknownCode"]


class UnknownCode(InvalidRequest):
    def __init__(self, detail: str) -> None:
        super().__init__(detail, field="code")
