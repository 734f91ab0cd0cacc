"""Code plugins: what a job runs. Each is a `Code` registered in the `jobvisor.codes`
entry-point group; `get_code(name)` finds one."""

from job_cmd.codes.base import Code, Launch
from job_cmd.codes.registry import get_code, installed_codes

__all__ = ["Code", "Launch", "get_code", "installed_codes"]
