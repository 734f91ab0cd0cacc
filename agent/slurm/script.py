"""A job's batch script: `#SBATCH` lines from its resources and the site defaults, then the
job's own program, run in its run dir, its exit code kept in the run dir (pure)."""

from __future__ import annotations

import math
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from jobvisor import sbatch_keys
from jobvisor.resources import Resources

from job_cmd.fsutil import META_DIR, OUTPUT_LOG

EXIT_CODE_FILE = "exit_code"
SCRIPT_FILE = "job.sbatch"
JOB_NAME_PREFIX = "jv-"

# resources keys beyond cpus/memory/gpus/walltime/nodes: those that become #SBATCH options, and
# all that a job may give (the sbatch driver checks the same set at submit)
EXTRA_OPTIONS = sbatch_keys.EXTRA_OPTIONS
EXTRA_KEYS = sbatch_keys.EXTRA_KEYS


class ScriptError(ValueError):
    """Resources that cannot become a batch script (the message names the field)."""


@dataclass(frozen=True)
class SiteDefaults:
    partition: str = ""
    qos: str = ""
    account: str = ""
    extra_args: tuple[str, ...] = ()  # site extras, e.g. ("--licenses=scratch",)


def job_name(job_id: str, attempt: int) -> str:
    return f"{JOB_NAME_PREFIX}{job_id}-{attempt}"


def format_time(seconds: float) -> str:
    """Slurm's --time: whole minutes, rounded up (Slurm's own granularity), as D-HH:MM:SS."""
    minutes = max(1, math.ceil(seconds / 60))
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    return f"{days}-{hours:02d}:{mins:02d}:00" if days else f"{hours:02d}:{mins:02d}:00"


def _clean(value: object, where: str) -> str:
    text = str(value)
    if not text or any(c in text for c in "\n\r\x00"):
        raise ScriptError(f"{where} must be a non-empty single line")
    return text


def check_sbatch_args(args: object, where: str = "resources.sbatch_args") -> list[str]:
    if not isinstance(args, (list, tuple)) or not all(isinstance(a, str) for a in args):
        raise ScriptError(f"{where} must be a list of strings such as ['--exclusive']")
    for arg in args:
        _clean(arg, where)
        if not arg.startswith("-"):
            raise ScriptError(f"{where}: {arg!r} is not an sbatch option (it must start with '-')")
    return list(args)


def sbatch_options(resources: Resources, site: SiteDefaults) -> list[str]:
    """The #SBATCH options of a job, in a stable order."""
    extra = dict(resources.extra or {})
    unknown = sorted(set(extra) - EXTRA_KEYS)
    if unknown:
        raise ScriptError(f"unknown resource {unknown[0]!r} for the sbatch driver; it knows "
                          f"{', '.join(sorted(EXTRA_KEYS))} besides cpus, memory, gpus, walltime, nodes")
    options = [f"--nodes={resources.nodes}", f"--cpus-per-task={resources.cpus}"]
    if resources.walltime is not None:
        options.append(f"--time={format_time(resources.walltime)}")
    if resources.memory is not None:
        options.append(f"--mem={math.ceil(resources.memory / 1024**2)}M")
    if resources.gpus:
        options.append(f"--gpus={resources.gpus}")
    defaults = {"partition": site.partition, "qos": site.qos, "account": site.account}
    for key, option in EXTRA_OPTIONS.items():
        value = extra[key] if key in extra else defaults.get(key)
        if value or key in extra:
            if key == "ntasks" and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise ScriptError("resources.ntasks must be a whole number >= 1")
            options.append(f"{option}={_clean(value, f'resources.{key}')}")
    options.extend(check_sbatch_args(list(site.extra_args), "[sbatch] sbatch_extra"))
    options.extend(check_sbatch_args(extra.get("sbatch_args", [])))
    return options


def render(
    *, job_id: str, attempt: int, run_dir: Path, argv: list[str], env: Mapping[str, str],
    resources: Resources, site: SiteDefaults,
) -> str:
    """The batch script. The job's program runs as a child of bash, so its exit code is
    written to `.jobvisor/exit_code` even where Slurm's accounting is off."""
    meta = run_dir / META_DIR
    lines = ["#!/bin/bash", f"#SBATCH --job-name={job_name(job_id, attempt)}",
             f"#SBATCH --chdir={_clean(run_dir, 'run_dir')}",
             f"#SBATCH --output={run_dir / OUTPUT_LOG}", "#SBATCH --open-mode=truncate"]
    lines += [f"#SBATCH {option}" for option in sbatch_options(resources, site)]
    lines.append("")
    for name, value in env.items():
        if not name.isidentifier() or not name.isascii():
            raise ScriptError(f"environment variable name {name!r} cannot be exported by a batch script")
        lines.append(f"export {name}={shlex.quote(value)}")
    lines += [
        f"cd {shlex.quote(str(run_dir))} || exit 1",
        " ".join(shlex.quote(a) for a in argv),
        "rc=$?",
        f"printf '%s\\n' \"$rc\" > {shlex.quote(str(meta / (EXIT_CODE_FILE + '.tmp')))} && "
        f"mv -f {shlex.quote(str(meta / (EXIT_CODE_FILE + '.tmp')))} {shlex.quote(str(meta / EXIT_CODE_FILE))}",
        "exit $rc",
        "",
    ]
    return "\n".join(lines)
