"""What every channel of the wire protocol shares: its version, how an op's failure travels,
and the gateway's envelope (who asks, and the answer)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from jobvisor.codec import Message
from jobvisor.errors import ErrorKind, OpError
from jobvisor.ids import UserId

PROTOCOL_VERSION = 2


@dataclass(frozen=True, slots=True)
class WireError(Message):
    """How an op failed, as it crosses the wire (in `OpReply` and `Reply`): the receiving side
    raises it again as the `OpError` of that kind, which the gateway maps to an HTTP status."""

    TYPE: ClassVar[str] = "op_error"
    kind: ErrorKind
    detail: str
    field: str | None = None

    @classmethod
    def of(cls, exc: OpError) -> "WireError":
        return cls(exc.kind, exc.detail, exc.field)

    def exception(self) -> OpError:
        return OpError.of_kind(self.kind, self.detail, field=self.field)


@dataclass(frozen=True, slots=True)
class Caller(Message):
    """Who asks: the gateway authenticated them; the supervisor re-checks ownership."""

    TYPE: ClassVar[str] = "caller"
    user: UserId
    is_admin: bool = False


@dataclass(frozen=True, slots=True)
class Reply(Message):
    """The supervisor's answer to one `GatewayRequest`: `data` on success, else `error`."""

    TYPE: ClassVar[str] = "reply"
    ok: bool
    data: Any = None
    error: WireError | None = None
