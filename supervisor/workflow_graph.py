"""One run of a workflow as a compact graph: what each job waits for, and its state.

A run of 100,000 jobs must cost little beside its jobs (each waiting job is a `ComputeJob`
already), so nothing here is an object per job: the edges are two CSR arrays of indexes
(job i's dependencies are `deps[deps_at[i]:deps_at[i+1]]`, its dependents likewise), the
count of unfinished dependencies and the state are one array entry each, and only the jobs
that need more (inputs, results others `$ref`) have an entry in a small dict or set.
A job is known by its index in the document; `index` maps a name to it.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator
from typing import Any

from jobvisor.ids import JobId
from jobvisor.states import JobState
from jobvisor.workflow_doc import InputRef, OnFailure, WorkflowDoc

STATES: tuple[JobState, ...] = tuple(JobState)
CODE: dict[JobState, int] = {state: code for code, state in enumerate(STATES)}
_WAITING, _COMPLETED = CODE[JobState.WAITING], CODE[JobState.COMPLETED]
_TERMINAL = bytes(1 if state.is_terminal else 0 for state in STATES)
MAX_NAMED = 5  # names in a waiting job's reason; the rest are counted


class RunGraph:
    __slots__ = ("names", "index", "job_ids", "deps_at", "deps", "dependents_at", "dependents", "pending", "codes",
                 "counts", "unfinished", "has_refs", "referenced", "results", "inputs", "on_failure", "targets")

    def __init__(self, doc: WorkflowDoc) -> None:
        n = len(doc.jobs)
        self.on_failure = doc.on_failure
        self.names: list[str] = [job.name for job in doc.jobs]
        self.index: dict[str, int] = {name: i for i, name in enumerate(self.names)}
        self.job_ids: list[JobId | None] = [None] * n
        self.targets: list[str] = [""] * n  # where each job runs (local, docker, sbatch:CLUSTER)
        index = self.index
        self.deps_at = array("i", [0])
        self.deps = array("i")
        incoming = array("i", bytes(4 * (n + 1)))
        for job in doc.jobs:
            for dep in job.after:
                d = index[dep]
                self.deps.append(d)
                incoming[d + 1] += 1
            self.deps_at.append(len(self.deps))
        for i in range(n):  # prefix sums: where each job's dependents start
            incoming[i + 1] += incoming[i]
        self.dependents_at = incoming
        self.dependents = array("i", bytes(4 * len(self.deps)))
        fill = array("i", incoming[:n])
        for i in range(n):
            for k in range(self.deps_at[i], self.deps_at[i + 1]):
                d = self.deps[k]
                self.dependents[fill[d]] = i
                fill[d] += 1
        self.pending = array("i", (self.deps_at[i + 1] - self.deps_at[i] for i in range(n)))
        self.codes = bytearray([_WAITING]) * n
        self.counts = [0] * len(STATES)
        self.counts[_WAITING] = n
        self.unfinished = n
        self.has_refs = bytearray(1 if job.has_refs else 0 for job in doc.jobs)
        referenced: set[int] = set()
        for job in doc.jobs:
            if job.has_refs:
                referenced.update(index[dep] for dep in job.after)
        self.referenced = frozenset(referenced)
        self.results: dict[str, Any] = {}  # results of completed jobs that others $ref
        self.inputs: dict[int, tuple[InputRef, ...]] = {i: job.inputs for i, job in enumerate(doc.jobs) if job.inputs}

    def __len__(self) -> int:
        return len(self.names)

    # ------------------------------------------------------------------ edges

    def deps_of(self, i: int) -> array:
        return self.deps[self.deps_at[i]:self.deps_at[i + 1]]

    def dependents_of(self, i: int) -> array:
        return self.dependents[self.dependents_at[i]:self.dependents_at[i + 1]]

    def is_root(self, i: int) -> bool:
        return self.deps_at[i] == self.deps_at[i + 1]

    # ------------------------------------------------------------------ states

    def state(self, i: int) -> JobState:
        return STATES[self.codes[i]]

    def is_finished(self, i: int) -> bool:
        return bool(_TERMINAL[self.codes[i]])

    def set_state(self, i: int, state: JobState) -> bool:
        """Record job i's state; True if it has just finished (it was not terminal before).
        A finished job's dependents each have one dependency fewer to wait for."""
        old, new = self.codes[i], CODE[state]
        if old == new:
            return False
        self.codes[i] = new
        self.counts[old] -= 1
        self.counts[new] += 1
        if _TERMINAL[new] and not _TERMINAL[old]:
            self.unfinished -= 1
            pending = self.pending
            for k in range(self.dependents_at[i], self.dependents_at[i + 1]):
                pending[self.dependents[k]] -= 1
            return True
        return False

    def counts_by_state(self) -> dict[str, int]:
        return {STATES[code].value: n for code, n in enumerate(self.counts) if n}

    def ready(self, i: int) -> bool:
        """Job i waits, and what it waits for has ended so that it may run: every dependency
        completed (or, with on_failure `continue`, ended in any state)."""
        if self.codes[i] != _WAITING or self.pending[i]:
            return False
        if self.on_failure is OnFailure.CONTINUE:
            return True
        return all(self.codes[d] == _COMPLETED for d in self.deps_of(i))

    def failed_dependency(self, i: int) -> int | None:
        """A dependency of job i that ended without completing (the first), or None."""
        for d in self.deps_of(i):
            if _TERMINAL[self.codes[d]] and self.codes[d] != _COMPLETED:
                return d
        return None

    def waiting_dependents(self, i: int) -> Iterator[int]:
        """Every job that waits, directly or not, on job i (each once, nearest first)."""
        seen = {i}
        frontier = [i]
        while frontier:
            nxt = []
            for j in frontier:
                for d in self.dependents_of(j):
                    if d not in seen:
                        seen.add(d)
                        if self.codes[d] == _WAITING:
                            nxt.append(d)
                            yield d
            frontier = nxt

    def waiting_reason(self, i: int, cache: dict[tuple[int, ...], str]) -> str:
        """"waiting for prep, mesh" (the first MAX_NAMED names, then a count). Jobs that wait
        for the same jobs share one string (a fan-out of 10,000 keeps one)."""
        deps = tuple(self.deps_of(i))
        reason = cache.get(deps)
        if reason is None:
            named = ", ".join(self.names[d] for d in deps[:MAX_NAMED])
            more = f" and {len(deps) - MAX_NAMED} more" if len(deps) > MAX_NAMED else ""
            reason = cache[deps] = f"waiting for {named}{more}"
        return reason
