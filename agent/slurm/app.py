"""Building the Slurm side of an agent whose kind is `sbatch` (see `agent.app`)."""

from __future__ import annotations

import asyncio
import logging
import os
import shlex
from pathlib import Path

from jobvisor import env_names
from jobvisor.config import load_config

from agent.core import AgentCore
from agent.slurm.backend import SlurmBackend
from agent.slurm.commands import Slurm
from agent.slurm.queue import SlurmQueue
from agent.slurm.script import SiteDefaults

logger = logging.getLogger(__name__)


def build(agent, loop: asyncio.AbstractEventLoop) -> AgentCore:
    """The core over a Slurm backend and its queue, with the jobs of an earlier agent found
    again. The `[sbatch]` settings come from the environment the driver set."""
    cfg = load_config().sbatch
    settings = agent.settings
    slurm = Slurm(agent.job_env, timeout=cfg.command_timeout)
    queue = SlurmQueue(loop, slurm, poll_interval=cfg.poll_interval, max_queued=cfg.max_queued_jobs)
    site = SiteDefaults(cfg.partition, cfg.qos, cfg.account, tuple(shlex.split(cfg.sbatch_extra)))
    backend = SlurmBackend(queue, site)
    core = AgentCore(
        settings.agent_id, settings.config, agent.connection, backend,
        io_timeout=settings.io_timeout, max_message_bytes=settings.max_message_bytes, op_env=agent.job_env,
    )
    run_root = os.environ.get(env_names.SLURM_RUN_ROOT)  # this user's run dirs: where a restarted agent looks
    if run_root:
        recover(core, backend, Path(run_root).absolute())
    queue.start()
    return core


def recover(core: AgentCore, backend: SlurmBackend, run_root: Path) -> int:
    """Adopt the Slurm jobs an earlier agent of this user left in its run dirs (before the
    first Hello, so the supervisor hears of them)."""
    found = backend.recover(run_root, core.jobs.__contains__)
    core.adopt(found)
    if found:
        logger.info("agent %s: found %d Slurm job(s) of an earlier agent in %s", core.agent_id, len(found), run_root)
    return len(found)
