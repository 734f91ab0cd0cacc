"""The agent's Slurm side (kind `sbatch`): each run op becomes a batch script submitted with
`sbatch`; one `squeue` per poll interval watches every job; the run dir keeps the Slurm id so
a restarted agent finds its jobs again.

    states.py     Slurm state -> job state (pure)
    script.py     job resources -> #SBATCH lines and the batch script (pure)
    commands.py   sbatch / squeue / scontrol / sacct / scancel as asyncio subprocesses
    record.py     SlurmJob (the Slurm side of a job's record) and its file in the run dir
    backend.py    SlurmBackend: the core's backend for Slurm (launch, scancel, Slurm's ends)
    queue.py      SlurmQueue: its files, the submit queue and the poll loop
"""
