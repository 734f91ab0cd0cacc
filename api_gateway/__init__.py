"""The public HTTP API: an aiohttp app that authenticates users, checks ownership, validates
input and turns each request into one op request to the supervisor (see `app.py`).

It never imports `supervisor`: it speaks to it only through `jobvisor.protocol`, so the two
can run on different hosts.
"""
