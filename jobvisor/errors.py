"""One error hierarchy for jobvisor.

    JobvisorError
    ├── ConfigError             bad or missing configuration (permanent)
    │   ├── InUse               the state dir or database is another supervisor's (one per database)
    │   └── ListenError         a port cannot be bound (taken, or not this machine's address)
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
    └── DriverError             a driver's backend failed; `permanent` says whether to retry
        ├── DriverUnavailable   retryable: the backend does not answer, or not in time (a
        │                       docker engine, an SSH login node); the message names it
        └── DriverRefused       permanent: retrying the same cannot help (a bad image or
                                configuration, refused credentials, an untrusted host key)

A driver raises one of the two subclasses wherever it knows which it is; a plain DriverError
is retryable unless made with permanent=True. The supervisor retries retryable ones with
backoff (the jobs wait, their reason says why) and fails the jobs only on permanent ones.

Third-party exceptions (SQLAlchemy, aiohttp, docker, asyncssh) are converted at the boundary
with `raise ... from exc` so callers handle jobvisor's types only.
"""

from __future__ import annotations

import enum
import errno
import os


class JobvisorError(Exception):
    """Root of every error jobvisor raises on purpose."""


class ConfigError(JobvisorError):
    pass


class InUse(ConfigError):
    """Another supervisor (a `jobvisor up`) holds the state dir or the database: two would
    assign the same event ids and job places and corrupt each other's view, so the second one
    stops before it opens anything. The message names the holder and the way out."""


class ListenError(ConfigError):
    """A server cannot bind its port. Keeps what was tried, so that the command that chose
    the port (`jobvisor up`) can say which option changes it and who holds it."""

    def __init__(self, what: str, host: str, port: int, exc: OSError) -> None:
        self.what, self.host, self.port, self.errno = what, host, port, exc.errno
        # the system's words for the errno: socket.create_server adds the address to strerror
        self.reason = os.strerror(exc.errno) if exc.errno else str(exc)
        super().__init__(f"the {what} cannot listen on {host}:{port}: {self.reason}")

    @property
    def in_use(self) -> bool:
        return self.errno == errno.EADDRINUSE


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
        """An error a subprocess printed as JSON (an analysis' `{"error": {...}}`)."""
        cls = _KIND_TO_CLASS.get(data.get("kind", ""), OpError)
        return cls(str(data.get("detail", "")), field=data.get("field"))

    @staticmethod
    def of_kind(kind: "ErrorKind", detail: str, *, field: str | None = None) -> "OpError":
        return _KIND_TO_CLASS.get(str(kind), OpError)(detail, field=field)


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
    """A driver's backend failed. `permanent`: retrying cannot help, so the jobs that need this
    backend fail with the message; otherwise (`retryable`) they wait and the start is retried."""

    permanent: bool = False

    def __init__(self, detail: str, *, permanent: bool | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        if permanent is not None:
            self.permanent = permanent

    @property
    def retryable(self) -> bool:
        return not self.permanent


class DriverUnavailable(DriverError):
    """The backend does not answer, or not in time: it may later (an engine restarting, a login
    node rebooting, a network blip). Always retryable; the message names the backend."""

    permanent = False

    def __init__(self, detail: str) -> None:
        super().__init__(detail)


class DriverRefused(DriverError):
    """What was asked cannot work as configured: a missing image, a bad setting, credentials
    or a host key the far side refuses. Always permanent: someone must change something."""

    permanent = True

    def __init__(self, detail: str) -> None:
        super().__init__(detail)


# errno values of an OSError that a later attempt may not meet (resources short for a moment,
# a network path down); any other OSError of a driver is taken as permanent (a missing file or
# program, a permission refused)
TRANSIENT_ERRNOS = frozenset({
    errno.EAGAIN, errno.EINTR, errno.ENOMEM, errno.EMFILE, errno.ENFILE, errno.ENOSPC, errno.EDQUOT,
    errno.EBUSY, errno.ETIMEDOUT, errno.ECONNREFUSED, errno.ECONNRESET, errno.ECONNABORTED,
    errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ENETDOWN, errno.EHOSTDOWN, errno.EPIPE,
})


def driver_os_error(detail: str, exc: OSError) -> DriverError:
    """The DriverError for an OSError met by a driver (raise it `from exc`): retryable when its
    errno is transient (TRANSIENT_ERRNOS), permanent otherwise. `detail` says what was done."""
    text = f"{detail}: {exc.strerror or exc}"
    if exc.errno in TRANSIENT_ERRNOS or isinstance(exc, (ConnectionError, TimeoutError)):
        return DriverUnavailable(text)
    return DriverRefused(text)
