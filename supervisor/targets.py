"""Driver instances by target name ("local", "docker", "sbatch:perlmutter"), each with its queue.

A target is made on first use (making one does no I/O), so a supervisor that never sees a
Slurm job never builds an SSH client, and an agent that reconnects after a restart finds its
driver made on the spot.
"""

from __future__ import annotations

import dataclasses

from drivers.base import DriverBase, DriverHost, driver_class, make_driver, target_name
from jobvisor.config import Config
from jobvisor.errors import DriverError, InvalidRequest
from jobvisor.resources import Resources
from supervisor.scheduler import DriverQueue

DEFAULT_DRIVER = "local"


class Targets:
    def __init__(self, config: Config, host: DriverHost) -> None:
        self.config = config
        self._host = host
        self.drivers: dict[str, DriverBase] = {}
        self.queues: dict[str, DriverQueue] = {}

    def driver(self, target: str) -> DriverBase:
        """The driver instance named `target`, made on first use; a target that cannot be made
        is the caller's mistake, named as the request's `driver` field."""
        driver = self.drivers.get(target)
        if driver is None:
            try:
                driver = make_driver(target, self.config, self._host)
            except DriverError as exc:
                raise InvalidRequest(exc.detail, field="driver") from exc
            self.drivers[target] = driver
        return driver

    def target_of(self, kind: str, resources: Resources) -> tuple[str, Resources]:
        """The target a job of driver `kind` with these resources goes to, and the resources
        naming it (a job that names no cluster shows the default one it got)."""
        made = self.drivers.get(kind)
        try:
            cls = type(made) if made is not None else driver_class(kind)
        except DriverError as exc:
            raise InvalidRequest(exc.detail, field="driver") from exc
        instance = cls.instance_for(self.config, resources)
        if instance and cls.instance_resource:
            resources = dataclasses.replace(resources, extra={**(resources.extra or {}), cls.instance_resource: instance})
        return target_name(kind, instance), resources

    def queue(self, target: str) -> DriverQueue:
        queue = self.queues.get(target)
        if queue is None:
            queue = self.queues[target] = DriverQueue(target, self.driver(target).cpus_total,
                                                      self.config.supervisor.per_user_cpus)
        return queue

    def idle_timeout(self, target: str) -> float:
        driver = self.drivers.get(target)
        return driver.idle_timeout if driver is not None else self.config.local.idle_timeout

    def shortest_idle_timeout(self) -> float:
        return min([self.config.local.idle_timeout, *(d.idle_timeout for d in self.drivers.values())])

    async def close(self) -> None:
        for driver in self.drivers.values():
            await driver.close()
