"""What the sbatch driver (in the supervisor) and the Slurm agent (on the login node) must agree
on, kept here because neither may import the other.

* The resource keys a job may give beyond cpus, memory, gpus, walltime and nodes: the driver
  checks them at submit, the agent turns them into `#SBATCH` options.
* The `[sbatch]` keys the agent reads, passed to it as JOBVISOR_SBATCH_<KEY> variables.
"""

from __future__ import annotations

# the resource that names a job's cluster: the `instance_resource` of the driver that serves
# the configured clusters (see drivers.base.kind_serving)
CLUSTER_RESOURCE = "cluster"

# resource key -> the sbatch option it becomes
EXTRA_OPTIONS: dict[str, str] = {
    "partition": "--partition",
    "qos": "--qos",
    "account": "--account",
    "constraint": "--constraint",
    "ntasks": "--ntasks",
    "reservation": "--reservation",
}
# every resource key an sbatch job may give beyond the common ones: "cluster" picks the
# driver instance, "sbatch_args" is a list of raw sbatch options
EXTRA_KEYS: frozenset[str] = frozenset(EXTRA_OPTIONS) | {CLUSTER_RESOURCE, "sbatch_args"}

# [sbatch] keys the agent reads (through JOBVISOR_SBATCH_<KEY> in its environment)
AGENT_KEYS: tuple[str, ...] = (
    "partition", "qos", "account", "sbatch_extra", "poll_interval", "max_queued_jobs", "command_timeout",
)
