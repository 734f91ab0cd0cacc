"""Errors of the sbatch driver, in jobvisor's hierarchy (see `jobvisor.errors`)."""

from __future__ import annotations

from jobvisor.errors import DriverError, ErrorKind, OpError

LOGIN_REQUIRED = "login required"


class LoginFailed(OpError):
    """The login node refused the credentials (or its host key is not trusted): nothing was
    stored, the user may try again."""

    kind = ErrorKind.FORBIDDEN


class LoginRequired(DriverError):
    """An agent must be started but the user has no live SSH connection to the cluster."""

    def __init__(self, cluster: str) -> None:
        super().__init__(login_required_reason(cluster), permanent=False)


def login_required_reason(cluster: str) -> str:
    return (f"{LOGIN_REQUIRED}: log in to cluster {cluster!r} with `jobvisor login {cluster}` "
            f"(or POST /api/v1/clusters/{cluster}/login)")
