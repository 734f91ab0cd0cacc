"""Fixtures of the sbatch tests: the real Slurm/sshd testbed and `jobvisor up` servers using it."""

from __future__ import annotations

import os

import pytest

from tests.drivers import slurmbed
from tests.harness import JobvisorProcess


@pytest.fixture
def testbed():
    missing = slurmbed.missing()
    if missing is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"the Slurm/sshd testbed is required in CI: {missing}")
        pytest.skip(f"Slurm/sshd testbed not available: {missing}")


@pytest.fixture
def make_server(tmp_path, testbed):
    """make(**server_env settings, config=TOML text) -> a started `jobvisor up` on the testbed;
    its Slurm jobs and remote work dir are removed afterwards."""
    started: list[JobvisorProcess] = []

    def make(config: str | None = None, **settings) -> JobvisorProcess:
        env = slurmbed.server_env(**settings)
        state_dir = tmp_path / f"state{len(started)}"
        if config is not None:
            state_dir.mkdir(parents=True)
            (state_dir / "jobvisor.toml").write_text(config)
            env["JOBVISOR_CONFIG"] = str(state_dir / "jobvisor.toml")
        proc = JobvisorProcess(state_dir, env=env)
        proc.sbatch_env = env
        started.append(proc)
        return proc.start()

    yield make
    for proc in started:
        proc.cleanup()
        slurmbed.cancel_all(proc.sbatch_env["JOBVISOR_SBATCH_WORK_DIR"])
        slurmbed.remove_work_dir(proc.sbatch_env["JOBVISOR_SBATCH_WORK_DIR"])
