"""The sbatch driver: agents on a Slurm cluster's login node, reached over SSH.

    errors.py   LoginFailed (a refused login), LoginRequired
    remote.py   the shell scripts run on the login node (pure: start, stop, watch an agent)
    ssh.py      one asyncssh connection per (user, cluster): login, keepalive, commands
    driver.py   SbatchDriver: DriverBase for the supervisor
"""

from drivers.sbatch.driver import SbatchDriver

__all__ = ["SbatchDriver"]
