"""What one job executes: the code plugins (shell, python, demo, ...), the python entry runner,
analysis of a finished run, confined reads of the run dir, and the job's status and progress
files. Imports only `jobvisor`; the agent imports this package, never the other way round.
"""
