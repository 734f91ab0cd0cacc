"""The agent: a long-lived process on the compute side that runs job commands for one user and
one driver kind, streams their status, progress and output to the supervisor over a websocket,
and survives supervisor restarts (it reconnects and re-announces what it runs).

    app.py         settings from the environment, wiring, signals, `main()`
    connection.py  the websocket: connect, hello, read frames, reconnect with backoff (thin)
    outbox.py      outgoing messages batched into one frame per loop turn
    core.py        the synchronous core: the job table and every decision
    jobs.py        one job's record and the pure exit -> state rules
    runner.py      processes: spawn directly, reap through pidfds, signal process groups
    tail.py        output log and progress file polling
    ops.py         io and analysis ops, off the event loop
"""
