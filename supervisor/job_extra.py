"""The checks of a submitted job that need its driver: its code (where the supervisor knows the
agent's codes), its environment and its working directory; what passes is the job's `extra`
(kept in its spec, sent in its run)."""

from __future__ import annotations

from drivers.base import DriverBase
from jobvisor.code_names import unknown_code_message
from jobvisor.errors import InvalidRequest
from jobvisor.job_spec import check_env
from jobvisor.protocol.job_requests import JobSpec


def check_code(code: str, driver: DriverBase) -> None:
    """An unknown code is refused where the driver says which codes its agents run."""
    known = driver.known_codes()
    if known is not None and code not in known:
        raise InvalidRequest(unknown_code_message(code, known), field="code")


def job_extra(spec: JobSpec, driver: DriverBase) -> dict:
    """{"env": ..., "workdir": ...} as far as the job has them; InvalidRequest naming the field."""
    extra: dict = {}
    env = check_env(spec.env)
    if env:
        extra["env"] = env
    if spec.workdir:
        extra["workdir"] = driver.check_workdir(spec.workdir)
    return extra
