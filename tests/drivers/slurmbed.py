"""The Slurm + sshd testbed (etc/testbed/start-slurm.sh) as the sbatch tests see it: whether
it is up, the settings of a jobvisor server that uses it, and cleanup."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import uuid
from pathlib import Path

STATE = Path(os.environ.get("JOBVISOR_TESTBED_STATE", "/var/lib/jobvisor-testbed"))
REPO = Path(__file__).resolve().parent.parent.parent
CLUSTER = "testbed"
HOW = "run etc/testbed/start-slurm.sh as root (etc/test does), then the tests again"


def settings() -> dict[str, str]:
    values = {}
    for line in (STATE / "testbed.env").read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip()] = value.strip()
    return values


def missing() -> str | None:
    """None when the testbed is up, else what is missing and how to start it."""
    if not (STATE / "testbed.env").is_file() or not os.access(STATE / "user_key", os.R_OK):
        return f"no Slurm/sshd testbed state in {STATE}: {HOW}"
    for tool in ("sbatch", "squeue", "scontrol", "scancel"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed: {HOW}"
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"sinfo failed ({exc}): {HOW}"
    if out.returncode != 0 or not any(s.strip().rstrip("*") in ("idle", "mix", "alloc") for s in out.stdout.split()):
        return f"the Slurm node is not up ({out.stdout.strip() or out.stderr.strip()}): {HOW}"
    env = settings()
    if not agent_python().exists():
        return f"this checkout is not installed for the test user ({agent_python()}): {HOW}"
    pid_file = STATE / "sshd.pid"
    try:
        os.kill(int(pid_file.read_text().strip()), 0)
    except (OSError, ValueError):
        return f"the testbed's sshd (port {env.get('SSH_PORT')}) is not running: {HOW}"
    return None


def agent_python() -> Path:
    """This checkout's copy of the project, installed for the test user by start-slurm.sh."""
    return Path(settings()["VENVS"]) / hashlib.sha256(str(REPO).encode()).hexdigest()[:12] / "bin" / "python"


def password() -> str:
    return (STATE / "password").read_text().strip()


def server_env(*, service_account: bool = False, poll: float = 0.5, work_dir: str | None = None) -> dict[str, str]:
    """Settings of a `jobvisor up` whose sbatch driver uses the testbed. Each call gets its own
    remote work dir, so tests never see each other's agents or run dirs."""
    env = settings()
    poll = float(os.environ.get("JOBVISOR_TEST_SBATCH_POLL", poll))  # e.g. to measure latency at 5 s
    out = {
        "JOBVISOR_SBATCH_CLUSTER": CLUSTER,
        "JOBVISOR_SBATCH_LOGIN_HOST": env["SSH_HOST"],
        "JOBVISOR_SBATCH_LOGIN_PORT": env["SSH_PORT"],
        "JOBVISOR_SBATCH_KNOWN_HOSTS": str(STATE / "known_hosts"),
        "JOBVISOR_SBATCH_KEY_FILE": str(STATE / "user_key"),
        "JOBVISOR_SBATCH_AGENT_COMMAND": f"{agent_python()} -m agent",
        "JOBVISOR_SBATCH_WORK_DIR": work_dir or f"$HOME/jobvisor-tests/{uuid.uuid4().hex[:10]}",
        "JOBVISOR_SBATCH_POLL_INTERVAL": str(poll),
        "JOBVISOR_SBATCH_PARTITION": env["SLURM_PARTITION"],
        "JOBVISOR_LOCAL_STOP_TIMEOUT": "3",
    }
    if service_account:
        out["JOBVISOR_SBATCH_KEY_USER"] = env["SSH_USER"]
    return out


def user() -> str:
    return settings()["SSH_USER"]


def scontrol(slurm_job_id: str) -> dict[str, str]:
    out = subprocess.run(["scontrol", "show", "job", "-o", slurm_job_id], capture_output=True, text=True, timeout=10)
    fields = {}
    for token in out.stdout.split():
        key, sep, value = token.partition("=")
        if sep and key not in fields:
            fields[key] = value
    return fields


def cancel_all(work_dir_template: str) -> None:
    """Cancel the Slurm jobs a test left in its remote work dir (and nobody else's)."""
    root = work_dir_template.replace("$HOME", settings().get("REMOTE_HOME", "")) + "/"
    out = subprocess.run(["squeue", "-h", "-u", user(), "-o", "%i %Z"], capture_output=True, text=True, timeout=20)
    ids = [line.split()[0] for line in out.stdout.splitlines() if len(line.split()) == 2 and line.split()[1].startswith(root)]
    if ids:
        subprocess.run(["scancel", *ids], capture_output=True, timeout=20)


def remove_work_dir(work_dir_template: str) -> None:
    home = settings().get("REMOTE_HOME", "")
    path = work_dir_template.replace("$HOME", home)
    if home and path.startswith(home + "/jobvisor-tests/"):
        shutil.rmtree(path, ignore_errors=True)


# ------------------------------------------------------------------ the driver contract suite

_CONTRACT_WORK_DIR = f"$HOME/jobvisor-tests/contract-{uuid.uuid4().hex[:10]}"


def contract_env() -> dict[str, str]:
    """The contract suite's server: a service account (no login step), and no restart of a
    killed agent, so that an agent's death makes its jobs `lost` as the contract says (the
    restart that keeps them is tested in test_sbatch.py)."""
    if missing() is not None:
        return {}
    env = server_env(service_account=True, work_dir=_CONTRACT_WORK_DIR)
    env["JOBVISOR_SBATCH_AGENT_RESTARTS"] = "0"
    return env


def contract_cleanup(state_dir) -> None:
    if missing() is None:
        cancel_all(_CONTRACT_WORK_DIR)


def kill_agent(agent: dict) -> None:
    """SIGKILL the agent's process on the login node (this machine, as the test user)."""
    os.kill(agent["pid"], 9)
