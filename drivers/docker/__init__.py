"""The docker driver: agents in containers on one or more Docker engines (see `driver`).

    spec     pure rules: names, labels, user, mounts, agent URL, host choice, exit reasons
    engine   one engine: SDK calls off the loop with a timeout, errors as DriverError
    driver   DockerDriver: start, stop, watch and adopt agent containers
"""

from drivers.docker.driver import DockerDriver

__all__ = ["DockerDriver"]
