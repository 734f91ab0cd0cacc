"""A kill -9 soak of the local driver: many short jobs through the HTTP API of a real
`jobvisor up`, while `up` and agents are SIGKILLed at random moments, then an account of
every job. Shared by `bench/soak` (5,000 jobs) and `tests/integration/test_soak.py` (a CI-sized
run), so both check exactly the same things.

Why a marker file: the supervisor's own records cannot prove that a job ran once, since the
bug looked for is the supervisor believing a job did not run when it did. So each job, as its
first act, appends "JOB_ID ATTEMPT" (from `JOBVISOR_JOB_ID` and `JOBVISOR_ATTEMPT`, which the
agent gives every job) to one shared file: one `echo` through `>>` is one write(2) to a file
opened with O_APPEND, so lines from concurrent jobs never interleave. Two lines with the same
id and attempt mean one attempt ran twice.

Why a known log: each job prints lines that depend only on its id and attempt, some before and
some after a sleep, so a log is streamed across kills; at the end every completed job's log
must be exactly what its last attempt printed, neither torn nor mixed with an earlier attempt.

What the client cannot account for is left out by construction: `up` is never killed while a
submit is in flight (the API has no idempotency key, so a submit whose reply was lost could not
be told apart from one that was never made), and the database must start empty, so the counts
of `GET /status` are the soak's own jobs.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import random
import shlex
import signal
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import aiohttp

from jobvisor import env_names
from jobvisor.isotime import unix_of
from jobvisor.states import ALLOWED_TRANSITIONS, TERMINAL_STATES, JobState
from tests.harness import JobvisorProcess

TERMINAL = frozenset(str(state) for state in TERMINAL_STATES)
# A `running` is stamped with the agent's start time, and a run goes out before its `starting`
# is stamped, so `running` may read a millisecond or two before `starting`. More than this is
# a note (see check_times).
CLOCK_SLACK = 0.05
# a job whose program exits 0 can end only completed, or lost when its agent vanished
EXPECTED_ENDS = frozenset({"completed", "lost"})


@dataclass(frozen=True)
class SoakOptions:
    """One soak's knobs. The defaults are `bench/soak`'s; the CI test passes smaller ones."""

    jobs: int = 5000
    seed: int = 1
    kill_interval: float = 4.0  # mean seconds between two kills (each drawn from 0.3x to 1.7x of it)
    agent_share: float = 0.35  # of the kills, the share that goes to an agent rather than to `up`
    agent_while_down: float = 0.2  # chance that a kill of `up` also kills an agent before the restart
    max_kills: int | None = None  # stop killing after this many (None: until every job has ended)
    cpus: int = 16  # local cpu slots: the jobs mostly sleep, so more slots than cores keeps the run short
    retry_share: float = 1 / 3  # of the jobs, the share submitted with `max_retries`
    max_retries: int = 2
    batch: int = 500  # jobs per submit request
    database_url: str = ""  # [database] url; empty: SQLite in the state dir
    state_parent: str | None = None  # where the temp dir (state dir, markers) is made
    recover_timeout: float = 60.0  # after a kill, some job must complete within this before the next kill
    settle_timeout: float = 300.0  # after the last kill, every job must be terminal within this
    keep: bool = False  # keep the temp dir (state dir, up.log, markers) for a post-mortem
    env: dict[str, str] = field(default_factory=dict)  # more environment for `up`


@dataclass(frozen=True)
class JobPlan:
    """What one job does: `before` lines, a sleep, then lines up to `lines` in all."""

    sleep: float
    before: int
    lines: int
    max_retries: int

    def script(self, markers: Path) -> str:
        """The job's shell script: the marker first (the job has started), then its output."""
        line = 'echo "$JOBVISOR_JOB_ID $JOBVISOR_ATTEMPT $i"; i=$((i+1))'
        parts = [f'echo "$JOBVISOR_JOB_ID $JOBVISOR_ATTEMPT" >> {shlex.quote(str(markers))}', "i=1",
                 f"while [ $i -le {self.before} ]; do {line}; done"]
        if self.sleep:
            parts.append(f"sleep {self.sleep:.2f}")
        parts.append(f"while [ $i -le {self.lines} ]; do {line}; done")
        return "\n".join(parts) + "\n"

    def expected_log(self, job_id: str, attempt: int) -> bytes:
        return "".join(f"{job_id} {attempt} {i}\n" for i in range(1, self.lines + 1)).encode()


def plan_jobs(options: SoakOptions, rng: random.Random) -> list[JobPlan]:
    """Mixed lengths, most of them short so that thousands end in minutes: about half end at
    once, a third sleep up to 0.4 s, the rest 0.5 to 1.5 s; one in twenty prints 1,500 lines
    (tens of KB, several log chunks) before its sleep."""
    plans = []
    for _ in range(options.jobs):
        draw = rng.random()
        sleep = 0.0 if draw < 0.5 else rng.uniform(0.05, 0.4) if draw < 0.85 else rng.uniform(0.5, 1.5)
        before = 1500 if rng.random() < 0.05 else rng.randint(1, 20)
        lines = before + rng.randint(0, 20)
        retries = options.max_retries if rng.random() < options.retry_share else 0
        plans.append(JobPlan(round(sleep, 2), before, lines, retries))
    return plans


@dataclass
class Kill:
    """One SIGKILL sent by the soak, for the record (times are Unix times, as `history`'s ISO times are read)."""

    at: float
    target: str  # "up" or "agent"
    pid: int
    note: str = ""


@dataclass
class SoakResult:
    """One soak's counts and what was wrong; the evidence stays out of `summary` (the JSON line)
    and goes to `findings_markdown`, for whoever fixes it."""

    jobs: int
    states: dict[str, int]
    markers: int
    retries: int  # attempts after the first, over all jobs
    retried_jobs: int
    up_kills: int
    agent_kills: int
    seconds: float  # from the first submit to the last job's end being seen
    settle_seconds: float  # from the last kill to every job's end
    problems: list[str]  # empty when every check passed
    notes: list[str]  # what is odd but proves no loss nor a second run (see check_times)
    evidence: list[dict]  # per job with a problem: its record, markers and the kills around it
    kills: list[dict]
    started_at: float

    def summary(self) -> dict[str, Any]:
        return {key: value for key, value in asdict(self).items() if key not in ("evidence", "kills")}


class Soak:
    """One soak run: start `up`, submit, kill, wait, account. Everything it starts is stopped
    by pid in `close`."""

    def __init__(self, options: SoakOptions, log: Callable[[str], None] = print) -> None:
        self.options = options
        self.log = log
        self.rng = random.Random(options.seed)
        self.plans = plan_jobs(options, self.rng)
        self.tmp = tempfile.mkdtemp(prefix="jobvisor-soak-", dir=options.state_parent)
        self.markers = Path(self.tmp) / "markers"
        env = {"JOBVISOR_LOGGING_LEVEL": "WARNING", "JOBVISOR_LOCAL_CPUS": str(options.cpus), **options.env}
        if options.database_url:
            env["JOBVISOR_DATABASE_URL"] = options.database_url
        self.server = JobvisorProcess(Path(self.tmp) / "state", env=env)
        self.token = ""
        self.session: aiohttp.ClientSession | None = None
        self.kills: list[Kill] = []
        self.ids: dict[str, JobPlan] = {}
        self.submitting = asyncio.Lock()  # held while a submit is in flight: `up` is not killed then

    # ------------------------------------------------------------------ processes

    def start_up(self) -> None:
        """Start (or restart) `up`; a start that fails is tried again a few times, since a kill
        can leave the old process's ports a moment to free."""
        for attempt in range(5):
            try:
                self.server.restart() if self.server.proc is not None else self.server.start()
                break
            except RuntimeError:
                if attempt == 4:
                    raise
                time.sleep(1.0)
        if self.server.token:
            self.token = self.server.token
        if not self.token:
            raise RuntimeError("`up` printed no admin token: the soak needs an empty database")

    def agent_processes(self) -> list[int]:
        """This soak's agents, from the process tree: the processes that carry our supervisor's
        agent url in their environment and run `-m agent` (jobs inherit that environment too)."""
        pids = []
        for pid in self.server.agent_pids():
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"agent" in argv and b"-m" in argv:
                pids.append(pid)
        return pids

    async def kill_up(self) -> None:
        async with self.submitting:
            pid = self.server.proc.pid
            self.server.kill()
            self.kills.append(Kill(time.time(), "up", pid))
            if self.rng.random() < self.options.agent_while_down:
                await asyncio.sleep(self.rng.uniform(0.0, 0.5))
                agents = self.agent_processes()
                if agents:
                    victim = self.rng.choice(agents)
                    note = f"{agent_id_of(victim)}, while up was down"
                    self._sigkill(victim)
                    self.kills.append(Kill(time.time(), "agent", victim, note))
            await asyncio.sleep(self.rng.uniform(0.0, 1.0))
            await asyncio.to_thread(self.start_up)

    async def kill_agent(self) -> None:
        """An agent named by `GET /agents`, checked against the process tree before the kill
        (a pid the API gave may have ended and been reused)."""
        try:
            agents = (await self.get("/agents", retry=False))["agents"]
        except (aiohttp.ClientError, asyncio.TimeoutError):
            agents = []
        ours = set(self.agent_processes())
        named = {agent["pid"]: agent["id"] for agent in agents if agent.get("pid") in ours}
        if not named:
            return
        victim = self.rng.choice(sorted(named))
        self._sigkill(victim)
        self.kills.append(Kill(time.time(), "agent", victim, named[victim]))

    @staticmethod
    def _sigkill(pid: int) -> None:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    # ------------------------------------------------------------------ HTTP

    async def request(self, method: str, path: str, *, retry: bool = True, timeout: float = 120.0, **kw) -> Any:
        """One API call; with `retry`, calls that meet a dead or restarting `up` are made again
        until `timeout` (the soak restarts it right after each kill)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                async with self.session.request(method, self.server.url + "/api/v1" + path, **kw,
                                                headers={"Authorization": f"Bearer {self.token}"}) as resp:
                    body = await resp.read()
                    if resp.status == 503 and retry and time.monotonic() < deadline:
                        raise aiohttp.ClientConnectionError(f"503: {body[:200]!r}")
                    if resp.status >= 400:
                        raise RuntimeError(f"{method} {path}: HTTP {resp.status}: {body[:500]!r}")
                    return json.loads(body) if resp.content_type.endswith("json") else body
            except (aiohttp.ClientConnectorError if method != "GET" else
                    (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, asyncio.TimeoutError)):
                # a submit is made again only when it never reached `up` (refused): one whose
                # reply was lost may have been committed
                if not retry or time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)

    async def get(self, path: str, **kw) -> Any:
        return await self.request("GET", path, **kw)

    async def counts(self) -> dict[str, int]:
        return (await self.get("/status"))["counts"]

    # ------------------------------------------------------------------ the run

    async def run(self) -> SoakResult:
        self.log(f"soak: {self.options.jobs} jobs, seed {self.options.seed}, {self.options.cpus} cpu slots, "
                 f"a kill every ~{self.options.kill_interval:g} s, database "
                 f"{self.options.database_url.split('@')[-1] if self.options.database_url else 'SQLite'}")
        await asyncio.to_thread(self.start_up)
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))
        try:
            if sum((await self.counts()).values()):
                raise RuntimeError(f"the database already holds jobs ({await self.counts()}): give the soak an empty one")
            started = time.time()
            submit = asyncio.create_task(self.submit())
            done = asyncio.Event()
            watch = asyncio.create_task(self.watch(done))
            await self.chaos(done, submit)
            await submit
            last_kill = self.kills[-1].at if self.kills else started
            if self.kills:
                self.log(f"soak: last kill; waiting up to {self.options.settle_timeout:g} s for every job to end")
            try:
                await asyncio.wait_for(done.wait(), self.options.settle_timeout)
            except asyncio.TimeoutError:
                pass
            watch.cancel()
            ended = time.time()
            return await self.account(started, ended, ended - last_kill)
        finally:
            await self.session.close()

    async def submit(self) -> None:
        """Every job, in batches; `up` is not killed while a batch is in flight (see above)."""
        specs = [{"code": "shell", "name": f"soak {i}", "max_retries": plan.max_retries,
                  "params": {"script": plan.script(self.markers)}} for i, plan in enumerate(self.plans)]
        for i in range(0, len(specs), self.options.batch):
            async with self.submitting:
                jobs = await self.request("POST", "/jobs", json=specs[i:i + self.options.batch])
            for job in jobs:
                self.ids[job["id"]] = self.plans[int(job["name"].split()[1])]
            await asyncio.sleep(0)  # let a kill waiting for the lock in

    async def watch(self, done: asyncio.Event) -> None:
        """Sets `done` once every submitted job is terminal (by `GET /status`)."""
        while True:
            await asyncio.sleep(0.5)
            try:
                counts = await self.counts()
            except (aiohttp.ClientError, asyncio.TimeoutError, RuntimeError):
                continue
            if len(self.ids) == self.options.jobs and sum(counts.get(state, 0) for state in TERMINAL) >= self.options.jobs:
                done.set()
                return

    async def chaos(self, done: asyncio.Event, submit: asyncio.Task) -> None:
        """SIGKILLs at random moments while jobs are queued or running."""
        while self.options.max_kills is None or len(self.kills) < self.options.max_kills:
            pause = self.rng.uniform(0.3, 1.7) * self.options.kill_interval
            try:
                await asyncio.wait_for(done.wait(), pause)
                return
            except asyncio.TimeoutError:
                pass
            if submit.done() and submit.exception() is not None:
                return
            before = await self.completed()
            if self.next_target() == "agent":
                await self.kill_agent()
            else:
                await self.kill_up()
            if not await self.recovered(before, done):
                self.log(f"soak: no job completed within {self.options.recover_timeout:g} s of the last kill; "
                         "no more kills")
                return

    def next_target(self) -> str:
        """`up` first, then an agent, then either at random: a short run still kills both kinds
        (unless `agent_share` rules one out), or it would prove less than it claims."""
        share = self.options.agent_share
        killed = {kill.target for kill in self.kills}
        if "up" not in killed and share < 1:
            return "up"
        if "agent" not in killed and share > 0:
            return "agent"
        return "agent" if self.rng.random() < share else "up"

    async def completed(self) -> int:
        return (await self.counts()).get("completed", 0)

    async def recovered(self, before: int, done: asyncio.Event) -> bool:
        """Whether a job completed after the last kill (or all have ended), within
        `recover_timeout`. The next kill waits for it: kills of `up` closer together than a
        restart and the agents' reconnect would stop all progress and prove nothing (a
        restarted supervisor holds the queue until the agents come back or the grace ends)."""
        deadline = time.monotonic() + self.options.recover_timeout
        while time.monotonic() < deadline and not done.is_set():
            if await self.completed() > before:
                return True
            await asyncio.sleep(0.2)
        return done.is_set()

    # ------------------------------------------------------------------ the account

    def read_markers(self) -> tuple[dict[str, list[int]], list[str]]:
        markers: dict[str, list[int]] = collections.defaultdict(list)
        malformed = []
        text = self.markers.read_text() if self.markers.exists() else ""
        for line in text.splitlines():
            job_id, _, attempt = line.partition(" ")
            if not attempt.isdigit():
                malformed.append(line)
                continue
            markers[job_id].append(int(attempt))
        return markers, malformed

    async def account(self, started: float, ended: float, settle: float) -> SoakResult:
        sem = asyncio.Semaphore(8)

        async def fetch(job_id: str) -> tuple[dict, bytes | None]:
            async with sem:
                job = await self.get(f"/jobs/{job_id}")
                log = await self.get(f"/jobs/{job_id}/log") if job["state"] == "completed" else None
                return job, log

        fetched = await asyncio.gather(*(fetch(job_id) for job_id in self.ids))
        markers, malformed = self.read_markers()
        problems: list[str] = []
        evidence: list[dict] = []
        if len(self.ids) != self.options.jobs:
            problems.append(f"{len(self.ids)} jobs submitted of {self.options.jobs}")
        for line in malformed:
            problems.append(f"a marker line that is not 'ID ATTEMPT' (torn write, or no JOBVISOR_ATTEMPT): {line!r}")
        for job_id in sorted(set(markers) - set(self.ids)):
            problems.append(f"markers of a job that was not submitted: {job_id} {markers[job_id]}")
        states: collections.Counter[str] = collections.Counter()
        notes: list[str] = []
        for job, log in fetched:
            states[job["state"]] += 1
            found = check_job(job, self.ids[job["id"]], markers.get(job["id"], []), log)
            odd = check_times(job.get("history") or [])
            problems.extend(f"{job['id']}: {problem}" for problem in found)
            notes.extend(f"{job['id']}: {note}" for note in odd)
            if found or odd:
                evidence.append(self.evidence(job, markers.get(job["id"], []), log,
                                              found + [f"note: {note}" for note in odd], started))
        attempts = [job["attempt"] for job, _ in fetched]
        return SoakResult(
            jobs=len(fetched), states=dict(sorted(states.items())), markers=sum(len(m) for m in markers.values()),
            retries=sum(a - 1 for a in attempts), retried_jobs=sum(a > 1 for a in attempts),
            up_kills=sum(k.target == "up" for k in self.kills), agent_kills=sum(k.target == "agent" for k in self.kills),
            seconds=ended - started, settle_seconds=settle, problems=problems, notes=notes, evidence=evidence,
            kills=[asdict(k) for k in self.kills], started_at=started)

    def evidence(self, job: dict, markers: list[int], log: bytes | None, found: list[str], started: float) -> dict:
        """What a fix needs about one job: its record with history, its markers, its log when
        wrong, and the kills within 3 s of one of its transitions."""
        times = [unix_of(entry["at"]) for entry in job.get("history", [])] or [started]
        return {"job": job, "markers": markers, "problems": found,
                "log_head": log[:300].decode(errors="replace") if log is not None and any(
                    not problem.startswith("note: ") for problem in found) else None,
                "kills_around": [asdict(k) for k in self.kills if any(abs(k.at - t) <= 3.0 for t in times)]}

    def close(self) -> None:
        self.server.cleanup()
        for pid in self.agent_processes():
            self._sigkill(pid)
        if not self.options.keep:
            import shutil

            shutil.rmtree(self.tmp, ignore_errors=True)


def agent_id_of(pid: int) -> str:
    """The agent id a process was started with (in its environment), to match the agent ids
    that job histories name."""
    try:
        for item in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
            if item.startswith(env_names.AGENT_ID.encode() + b"="):
                return item.split(b"=", 1)[1].decode()
    except OSError:
        pass
    return "agent id unknown"


def check_job(job: dict, plan: JobPlan, markers: list[int], log: bytes | None) -> list[str]:
    """Every check on one job, as a list of what is wrong (empty: nothing). Independent of the
    supervisor's view where it can be: the markers are what the job itself wrote."""
    problems = []
    state, attempt, history = job["state"], job["attempt"], job.get("history") or []
    if state not in TERMINAL:
        problems.append(f"not terminal: {state} ({job['reason']})")
    elif state not in EXPECTED_ENDS:
        problems.append(f"ended {state} ({job['reason']}), which a job that exits 0 cannot")
    if job["max_retries"] != plan.max_retries:
        problems.append(f"max_retries {job['max_retries']}, submitted with {plan.max_retries}")
    counts = collections.Counter(markers)
    for number, n in sorted(counts.items()):
        if n > 1:
            problems.append(f"ran {n} times under attempt {number} (markers {markers})")
        if number > attempt:
            problems.append(f"a marker for attempt {number}, beyond its attempt {attempt}")
    if attempt > plan.max_retries + 1:
        problems.append(f"attempt {attempt} with max_retries {plan.max_retries}")
    if state == "completed":
        if counts.get(attempt, 0) != 1:
            problems.append(f"completed attempt {attempt} but its markers are {markers}")
        expected = plan.expected_log(job["id"], attempt)
        if log != expected:
            problems.append(log_difference(log, expected))
        if job["exit_code"] != 0:
            problems.append(f"completed with exit code {job['exit_code']}")
    if state == "lost" and attempt <= plan.max_retries:
        problems.append(f"lost at attempt {attempt} with retries left (max_retries {plan.max_retries})")
    problems.extend(check_history(job, history))
    # A job that started shows it in its attempt's history, unless that attempt ended `lost`: a
    # job sent ahead stays `queued` until its agent reports it running, and an agent killed
    # (with `up` down) before that report leaves the supervisor nothing but "it may have run".
    ran = {entry["attempt"] for entry in history if entry["state"] in ("starting", "running", "lost")}
    for number in counts:
        if number not in ran:
            problems.append(f"a marker for attempt {number}, which its history never started nor lost")
    return problems


def log_difference(log: bytes | None, expected: bytes) -> str:
    """Where a log departs from what the job printed: its size and the first line that differs."""
    if log is None:
        return "no log"
    at = next((i for i, (a, b) in enumerate(zip(log, expected)) if a != b), min(len(log), len(expected)))
    start = log.rfind(b"\n", 0, at) + 1

    def line(data: bytes) -> str:
        return data[start:data.find(b"\n", start) + 1 or len(data)].decode(errors="replace")

    return (f"log is not whole: {len(log)} bytes, expected {len(expected)}; from byte {start} it reads "
            f"{line(log)!r} where the job printed {line(expected)!r}")


def check_history(job: dict, history: list[dict]) -> list[str]:
    """The history is a path through the transition table: it starts queued at attempt 1, a
    new attempt follows only a `lost` one, and it ends where the job is."""
    if not history:
        return ["no history"]
    problems = []
    first = history[0]
    if (first["attempt"], first["state"]) != (1, "queued"):
        problems.append(f"history starts with attempt {first['attempt']} {first['state']}")
    for before, after in zip(history, history[1:]):
        if after["attempt"] == before["attempt"] + 1:
            if (before["state"], after["state"]) != ("lost", "queued"):
                problems.append(f"attempt {after['attempt']} began after {before['state']}, not after lost")
        elif after["attempt"] != before["attempt"]:
            problems.append(f"attempt went from {before['attempt']} to {after['attempt']}")
        elif JobState(after["state"]) not in ALLOWED_TRANSITIONS.get(JobState(before["state"]), frozenset()):
            problems.append(f"{before['state']} -> {after['state']} under attempt {after['attempt']}")
    last = history[-1]
    if (last["attempt"], last["state"]) != (job["attempt"], job["state"]):
        problems.append(f"history ends at attempt {last['attempt']} {last['state']}, the job is at "
                        f"attempt {job['attempt']} {job['state']}")
    return problems


def check_times(history: list[dict]) -> list[str]:
    """Where a history's times run backwards. A note, not a failure: after a restart, a job that
    ran and ended while `up` was down gets its `starting` stamped when its agent re-announces it,
    after the agent's own times of its start and end (reported for the supervisor to fix; what
    this soak must prove is that nothing ran twice and nothing was lost)."""
    times = [unix_of(entry["at"]) for entry in history]  # the API's ISO times
    return [f"history goes back in time by {before - after:.3f} s at {entry['state']} (attempt {entry['attempt']})"
            for before, after, entry in zip(times, times[1:], history[1:]) if after < before - CLOCK_SLACK]


def report_lines(result: SoakResult) -> list[str]:
    """The figures, for a person."""
    lines = [
        f"jobs: {result.jobs}, by state: {json.dumps(result.states)}",
        f"markers: {result.markers} (one per attempt that started), retries: {result.retries} "
        f"in {result.retried_jobs} jobs",
        f"kills: {result.up_kills} of up, {result.agent_kills} of agents",
        f"duration: {result.seconds:.1f} s from the first submit to the last end; "
        f"{result.settle_seconds:.1f} s from the last kill to the last end",
    ]
    if result.notes:
        lines.append(f"notes: {len(result.notes)} (odd, but no loss nor a second run)")
        lines.extend(f"  {note}" for note in result.notes[:10])
    if result.problems:
        lines.append(f"PROBLEMS: {len(result.problems)}")
        lines.extend(f"  {problem}" for problem in result.problems[:50])
    else:
        lines.append("every check passed")
    return lines


def findings_markdown(result: SoakResult, title: str) -> str:
    """The evidence of a failed soak, for whoever fixes it: each job with a problem, its
    history (times also as seconds from the soak's start), its markers and the kills near it."""
    t0 = result.started_at
    out = [f"## {title}", "", *(f"- {line.strip()}" for line in report_lines(result)[:4]), "",
           "Kills (seconds from the first submit): " + ", ".join(
               f"{k['at'] - t0:.2f} {k['target']} {k['pid']}{' (' + k['note'] + ')' if k['note'] else ''}"
               for k in result.kills), ""]
    for item in result.evidence:
        job = item["job"]
        out.append(f"### {job['id']}: {job['state']}, attempt {job['attempt']}, max_retries {job['max_retries']}")
        out.extend(f"- {problem}" for problem in item["problems"])
        out.append(f"- markers (attempts the job itself wrote): {item['markers']}")
        out.append("- history:")
        out.extend(f"  - {unix_of(entry['at']) - t0:8.3f} s  attempt {entry['attempt']} {entry['state']}: {entry['reason']}"
                   for entry in job.get("history", []))
        out.append("- kills around it: " + (", ".join(f"{k['at'] - t0:.2f} s {k['target']} {k['pid']}"
                                                    f"{' (' + k['note'] + ')' if k['note'] else ''}"
                                                    for k in item["kills_around"]) or "none"))
        if item["log_head"] is not None:
            out.append(f"- log head: {item['log_head']!r}")
        out.append("")
    return "\n".join(out) + "\n"


async def run_soak(options: SoakOptions, log: Callable[[str], None] = print) -> SoakResult:
    """One whole soak; what it started is stopped whatever happens."""
    soak = Soak(options, log)
    try:
        return await soak.run()
    finally:
        await asyncio.to_thread(soak.close)
