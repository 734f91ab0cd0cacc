"""The CLI's error: a message for the user, printed without a traceback, and an exit status."""

from __future__ import annotations

from jobvisor.errors import JobvisorError


class CliError(JobvisorError):
    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status
