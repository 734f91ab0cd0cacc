"""Logging set-up shared by every process (supervisor, gateway, agent, CLI)."""

from __future__ import annotations

import logging
import sys

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(level: str = "INFO", stream=None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiohttp's access log is one line per request; too much at thousands of jobs per second
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    logging.getLogger("tornado.access").setLevel(logging.WARNING)
