"""Building the Slurm side of an agent whose kind is `sbatch` (see `agent.app`)."""

from __future__ import annotations

import asyncio
import logging
import os
import shlex
from pathlib import Path

from jobvisor import env_names
from jobvisor.config import load_config

from agent.slurm.commands import Slurm
from agent.slurm.core import SlurmAgentCore
from agent.slurm.queue import SlurmQueue
from agent.slurm.script import SiteDefaults

logger = logging.getLogger(__name__)



def build(agent, loop: asyncio.AbstractEventLoop) -> tuple[SlurmQueue, SlurmAgentCore]:
    """The queue (the core's `processes`) and the core, with the jobs of an earlier agent
    found again. The `[sbatch]` settings come from the environment the driver set."""
    cfg = load_config().sbatch
    settings = agent.settings
    slurm = Slurm(agent.job_env, timeout=cfg.command_timeout)
    queue = SlurmQueue(loop, slurm, poll_interval=cfg.poll_interval, max_queued=cfg.max_queued_jobs)
    site = SiteDefaults(cfg.partition, cfg.qos, cfg.account, tuple(shlex.split(cfg.sbatch_extra)))
    core = SlurmAgentCore(
        settings.agent_id, settings.config, agent.connection, queue,
        io_timeout=settings.io_timeout, max_message_bytes=settings.max_message_bytes,
        op_env=agent.job_env, site=site,
    )
    queue.core = core
    run_root = os.environ.get(env_names.SLURM_RUN_ROOT)  # this user's run dirs: where a restarted agent looks
    if run_root:
        core.recover(Path(run_root).absolute())
    queue.start()
    return queue, core
