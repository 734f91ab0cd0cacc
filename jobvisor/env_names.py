"""Every environment variable name that crosses a process boundary between jobvisor's layers.

A driver sets the agent's variables and the agent reads them; the agent sets the job's
variables and job_cmd reads them; the configuration is overridden by `JOBVISOR_<SECTION>_<KEY>`
everywhere, including in an agent that has no file of its own. Each name is written here once,
so a driver and the agent cannot drift apart.
"""

from __future__ import annotations

# ---- the configuration
CONFIG_PREFIX = "JOBVISOR_"  # JOBVISOR_<SECTION>_<KEY> overrides a key of the file
CONFIG_FILE = "JOBVISOR_CONFIG"  # the TOML file, when --config is not given


def config_name(section: str, key: str) -> str:
    """The variable that overrides `[section] key` (`agent`, `max_log_chunk` ->
    `JOBVISOR_AGENT_MAX_LOG_CHUNK`)."""
    return f"{CONFIG_PREFIX}{section}_{key}".upper()


# ---- what a driver gives the agent it starts
AGENT_ID = "JOBVISOR_AGENT_ID"  # also inherited by every job: how leftovers of a dead agent are found
AGENT_TOKEN = "JOBVISOR_AGENT_TOKEN"  # secret: the agent removes it from its environment at once
AGENT_URL = "JOBVISOR_AGENT_URL"  # the supervisor's websocket (ws:// or wss://)
AGENT_USER = "JOBVISOR_AGENT_USER"
AGENT_KIND = "JOBVISOR_AGENT_KIND"  # the driver's target name; SLURM_KIND: jobs go to Slurm
CONTAINER = "JOBVISOR_CONTAINER"  # set by container drivers: the cgroup is the agent's own (OOM kills)
SLURM_RUN_ROOT = "JOBVISOR_SLURM_RUN_ROOT"  # a Slurm agent's run dirs: where a restarted one looks

# The value of AGENT_KIND for an agent whose jobs are submitted to Slurm: the sbatch driver's
# kind. The agent cannot import drivers, so the name lives here for both.
SLURM_KIND = "sbatch"

# ---- what the agent gives each job (read by job_cmd)
JOB_ID = "JOBVISOR_JOB_ID"
ATTEMPT = "JOBVISOR_ATTEMPT"
RUN_DIR = "JOBVISOR_RUN_DIR"
PROGRESS_FILE = "JOBVISOR_PROGRESS_FILE"
ARRAY_INDEX = "JOBVISOR_ARRAY_INDEX"  # only for an element of a job array (`submit --array`)


def job_env(job_id: str, attempt: int, run_dir: str, progress_file: str,
            array_index: int | None = None) -> dict[str, str]:
    """The variables every job sees, whichever backend runs it (and an array element's index)."""
    env = {JOB_ID: job_id, ATTEMPT: str(attempt), RUN_DIR: run_dir, PROGRESS_FILE: progress_file}
    if array_index is not None:
        env[ARRAY_INDEX] = str(array_index)
    return env
