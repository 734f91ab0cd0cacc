"""The shell scripts the driver runs on the login node (pure; fed to `sh -s` on stdin, so
nothing secret ever appears on a command line there).

An agent runs detached (`nohup setsid`) in the remote work dir, as its own process group,
logging to `agents/CLUSTER/USER.log`; `agents/CLUSTER/USER.pid` names its group. Before a
start, a stale agent of the same user and cluster is killed with SIGKILL (its Slurm jobs go on:
the new agent finds them in their run dirs and the supervisor decides what to keep). Run dirs
are `runs/CLUSTER/USER/JOB`. The cluster in every path keeps two clusters that share a file
system (and so a work dir) from killing each other's agents or adopting each other's jobs.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping

from jobvisor import env_names

WORK_DIR_EXITS = (11, 12)  # the start script's exits when the work dir cannot be made, entered
SAFE_NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,128}$")
PID_LINE = re.compile(r"^pid=(\d+)$", re.MULTILINE)


def check_name(name: str, what: str = "user name") -> str:
    if not SAFE_NAME.match(name) or name in (".", ".."):
        raise ValueError(f"{what} {name!r} cannot name files on the login node")
    return name


def run_root(cluster: str, user: str) -> str:
    """The user's run dirs on this cluster, relative to the work dir."""
    return f"runs/{check_name(cluster, 'cluster name')}/{check_name(user)}"


def run_dir(cluster: str, user: str, job_id: str) -> str:
    return f"{run_root(cluster, user)}/{job_id}"


def agent_log(cluster: str, user: str) -> str:
    return f"agents/{check_name(cluster, 'cluster name')}/{check_name(user)}.log"


def resolve_work_dir(template: str) -> str:
    """Prints the work dir with the login shell's variables ($SCRATCH, $HOME) expanded."""
    if any(c in template for c in '"`\n\\'):
        raise ValueError("[sbatch] work_dir must not contain quotes, backquotes, backslashes or newlines")
    return f'printf "%s\\n" "{template}"\n'


def _kill_group(pid_var: str, signal: str, marker: str) -> str:
    return (f'if kill -0 "${pid_var}" 2>/dev/null && {{ [ ! -r "/proc/${pid_var}/environ" ] || '
            f'tr "\\0" "\\n" <"/proc/${pid_var}/environ" | grep -qx {shlex.quote(marker)}; }}; then\n'
            f'  kill -{signal} -- "-${pid_var}" 2>/dev/null || kill -{signal} "${pid_var}" 2>/dev/null\n'
            f'fi\n')


def start_script(*, work_dir: str, cluster: str, user: str, command: str, env: Mapping[str, str], token: str) -> str:
    """Start an agent; prints `pid=N` (its process group). `token` travels in this script's
    text on stdin and reaches the agent in its environment only."""
    log = agent_log(cluster, user)
    agents = log.rsplit("/", 1)[0]
    runs = run_root(cluster, user)
    lines = [
        "set -u",
        "umask 077",
        f"work={shlex.quote(work_dir)}",
        f'mkdir -p "$work/{agents}" "$work/{runs}" || exit 11',
        'cd "$work" || exit 12',
        f'pidfile="$work/{log[:-len(".log")]}.pid"',
        f'log="$work/{log}"',
        'if [ -s "$pidfile" ]; then',
        '  old=$(cat "$pidfile")',
        "  " + _kill_group("old", "KILL", f"{env_names.AGENT_KIND}={env_names.SLURM_KIND}").replace("\n", "\n  ").rstrip(),
        "fi",
        f"{env_names.AGENT_TOKEN}={shlex.quote(token)}",
        f"export {env_names.AGENT_TOKEN}",
    ]
    for name, value in env.items():
        lines.append(f"{name}={shlex.quote(value)}; export {name}")
    lines += [
        f'{env_names.SLURM_RUN_ROOT}="$work/{runs}"; export {env_names.SLURM_RUN_ROOT}',
        f'nohup setsid /bin/sh -c {shlex.quote(command)} >>"$log" 2>&1 </dev/null &',
        'pid=$!',
        'echo "$pid" >"$pidfile"',
        'echo "pid=$pid"',
        "",
    ]
    return "\n".join(lines)


def parse_pid(output: str) -> int | None:
    match = PID_LINE.search(output)
    return int(match.group(1)) if match else None


def stop_script(*, pid: int, agent_id: str, timeout: float) -> str:
    """SIGTERM the agent's process group (it stops its jobs and says so), SIGKILL after
    `timeout` seconds. Only a process whose environment names this agent is signalled."""
    marker = f"{env_names.AGENT_ID}={agent_id}"
    tenths = max(1, int(timeout * 10))
    return (
        f"pid={int(pid)}\n"
        + _kill_group("pid", "TERM", marker)
        + f'i=0; while kill -0 "$pid" 2>/dev/null && [ "$i" -lt {tenths} ]; do sleep 0.1; i=$((i+1)); done\n'
        + _kill_group("pid", "KILL", marker)
    )


def watch_command(pid: int) -> str:
    """Ends when the process is gone (the driver's way to notice an agent's death at once)."""
    return f"while kill -0 {int(pid)} 2>/dev/null; do sleep 1; done; echo gone"
