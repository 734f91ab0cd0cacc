"""One error hierarchy for jobvisor.

    JobvisorError
    ├── ConfigError             bad or missing configuration (permanent)
    ├── ProtocolError           a message that cannot be decoded or is not allowed
    │   ├── MessageTooLarge
    │   └── VersionMismatch
    ├── AuthError               wrong or missing token or secret
    ├── OpError                 an op failed; `kind` says how, the gateway maps it to HTTP
    │   ├── NotFound
    │   ├── InvalidRequest      (names the field)
    │   │   └── InvalidParams   a job's params do not fit its code (`field`: params.argv)
    │   ├── Conflict
    │   ├── OpTimeout
    │   └── Unavailable         retryable: no agent, engine down, disk full
    ├── PathEscape              an io path that leaves the run dir
    └── DriverError             a driver's backend failed (retryable unless `permanent`)

Third-party exceptions (SQLAlchemy, aiohttp, docker, asyncssh) are converted at the boundary
with `raise ... from exc` so callers handle jobvisor's types only.
"""

from __future__ import annotations

import enum


class JobvisorError(Exception):
    """Root of every error jobvisor raises on purpose."""


class ConfigError(JobvisorError):
    pass


class ProtocolError(JobvisorError):
    pass


class MessageTooLarge(ProtocolError):
    pass


class VersionMismatch(ProtocolError):
    pass


class AuthError(JobvisorError):
    pass


class ErrorKind(enum.StrEnum):
    """How an op failed; travels on the wire and maps to one HTTP status in the gateway."""

    NOT_FOUND = "not_found"
    INVALID = "invalid"
    CONFLICT = "conflict"
    TIMEOUT = "timeout"
    UNAVAILABLE = "unavailable"
    FORBIDDEN = "forbidden"
    TOO_LARGE = "too_large"
    INTERNAL = "internal"


class OpError(JobvisorError):
    kind: ErrorKind = ErrorKind.INTERNAL

    def __init__(self, detail: str, *, field: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field

    def to_wire(self) -> dict:
        return {"kind": str(self.kind), "detail": self.detail, "field": self.field}

    @staticmethod
    def from_wire(data: dict) -> "OpError":
        cls = _KIND_TO_CLASS.get(data.get("kind", ""), OpError)
        return cls(str(data.get("detail", "")), field=data.get("field"))


class NotFound(OpError):
    kind = ErrorKind.NOT_FOUND


class InvalidRequest(OpError):
    kind = ErrorKind.INVALID


class InvalidParams(InvalidRequest):
    """The params of a job do not fit its code. Raised by the checks both the gateway (at
    submit) and the agent (at launch) run, so it lives here (see `jobvisor.code_params`)."""


class Conflict(OpError):
    kind = ErrorKind.CONFLICT


class OpTimeout(OpError):
    kind = ErrorKind.TIMEOUT


class Unavailable(OpError):
    kind = ErrorKind.UNAVAILABLE


class Forbidden(OpError):
    kind = ErrorKind.FORBIDDEN


class TooLarge(OpError):
    kind = ErrorKind.TOO_LARGE


_KIND_TO_CLASS: dict[str, type[OpError]] = {
    str(c.kind): c
    for c in (NotFound, InvalidRequest, Conflict, OpTimeout, Unavailable, Forbidden, TooLarge)
}


class PathEscape(JobvisorError):
    """A requested path would leave the job's run dir (`..`, absolute, or a symlink out)."""


class DriverError(JobvisorError):
    def __init__(self, detail: str, *, permanent: bool = False) -> None:
        super().__init__(detail)
        self.detail = detail
        self.permanent = permanent
