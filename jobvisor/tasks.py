"""Background tasks that are kept referenced, logged when they fail, and cancelled together."""

from __future__ import annotations

import asyncio
import logging
from typing import Coroutine


class Tasks:
    """A set of background tasks (asyncio keeps only weak references to running tasks)."""

    def __init__(self, logger: logging.Logger, what: str) -> None:
        self._tasks: set[asyncio.Task] = set()
        self._log = logger
        self._what = what

    def spawn(self, coro: Coroutine) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self._log.error("%s task failed", self._what, exc_info=task.exception())

    def cancel_all(self) -> None:
        for task in list(self._tasks):
            task.cancel()

    def __iter__(self):
        return iter(list(self._tasks))

    def __len__(self) -> int:
        return len(self._tasks)
