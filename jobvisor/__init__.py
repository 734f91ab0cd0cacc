"""jobvisor: run researchers' jobs on their machine, in Docker or on Slurm.

This package is the distribution's face: the CLI, configuration, the wire protocol
(message types, job states, codec), typed ids and logging set-up. Every other top-level
package may import it; it imports none of them.
"""

__version__ = "0.1.0"
