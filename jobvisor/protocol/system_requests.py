"""Gateway -> supervisor requests about the system as a whole: the queue, the agents and the
status views, logins to Slurm clusters, and the orchestrator's ops over many jobs at once
(clear a queue, cancel or stop an agent, the admins' cancel-all and shutdown)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from jobvisor.codec import Message
from jobvisor.ids import AgentId
from jobvisor.protocol.common import Caller


# --------------------------------------------------------------------------- views


@dataclass(frozen=True, slots=True)
class GetQueue(Message):
    TYPE: ClassVar[str] = "get_queue"
    caller: Caller


@dataclass(frozen=True, slots=True)
class GetAgents(Message):
    TYPE: ClassVar[str] = "get_agents"
    caller: Caller


@dataclass(frozen=True, slots=True)
class GetStatus(Message):
    TYPE: ClassVar[str] = "get_status"


# --------------------------------------------------------------------------- cluster logins


@dataclass(frozen=True, slots=True)
class ClusterLogin(Message):
    """Log the caller in to a Slurm cluster's login node (the `sbatch_login` op). The password
    and one-time code live only in memory for the SSH connect: never logged, never stored."""

    TYPE: ClassVar[str] = "cluster_login"
    caller: Caller
    cluster: str
    username: str = ""
    password: str = field(default="", repr=False)
    otp: str = field(default="", repr=False)
    use_key: bool = False


@dataclass(frozen=True, slots=True)
class ClusterLogout(Message):
    """Close the caller's SSH connection to a cluster; new agents there need a new login."""

    TYPE: ClassVar[str] = "cluster_logout"
    caller: Caller
    cluster: str


@dataclass(frozen=True, slots=True)
class ListClusters(Message):
    """The configured Slurm clusters and whether the caller is logged in to each."""

    TYPE: ClassVar[str] = "list_clusters"
    caller: Caller


# --------------------------------------------------------------------------- orchestrator: many jobs at once


@dataclass(frozen=True, slots=True)
class ClearQueue(Message):
    """Cancel queued and waiting jobs: the caller's, or (admins) everyone's, or `user`'s."""

    TYPE: ClassVar[str] = "clear_queue"
    caller: Caller
    user: str = ""  # admins: only this user's; empty: the caller's (admins: everyone's)


@dataclass(frozen=True, slots=True)
class CancelAgentJobs(Message):
    """Cancel every job placed with one agent (running, starting, sent ahead)."""

    TYPE: ClassVar[str] = "cancel_agent_jobs"
    caller: Caller
    agent_id: AgentId


@dataclass(frozen=True, slots=True)
class ShutdownAgent(Message):
    """Cancel an agent's jobs and stop it through its driver; a new one is acquired when needed."""

    TYPE: ClassVar[str] = "shutdown_agent"
    caller: Caller
    agent_id: AgentId


@dataclass(frozen=True, slots=True)
class CancelAll(Message):
    """Admins: cancel every unfinished job of every user."""

    TYPE: ClassVar[str] = "cancel_all"
    caller: Caller


@dataclass(frozen=True, slots=True)
class ShutdownServer(Message):
    """Admins: stop `jobvisor up` as SIGTERM does, once this request is answered."""

    TYPE: ClassVar[str] = "shutdown_server"
    caller: Caller
