"""A job as a person names it: its full id, a unique prefix of its id, or its unique name;
and the jobs of a filter (state, name, job array), page after page.

Every command that takes a job goes through `resolve_job(s)`, which asks the API
(`GET /jobs?id_prefix=` and `?name=`), so what a name means is decided by the server's view of
the caller's jobs (all jobs for an admin). A name shared by several jobs of one owner means the
newest of them, as a researcher who submits `--name sim` again expects (a note on stderr says
which, and how many there are), except where a mistake costs work (`cancel`). No match, or an
ambiguity otherwise, is a usage error (exit status 2) that lists the candidates.
"""

from __future__ import annotations

import re
import sys
from typing import Iterable

from jobvisor.cli.client import ApiClient
from jobvisor.cli.errors import CliError

USAGE = 2  # the exit status of a job reference that names no job, or several
FULL_ID = re.compile(r"^j[0-9a-z]{20}$")  # jobvisor.ids.new_job_id: used as it is
ID_CHARS = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
SHOWN = 5  # candidates listed in an ambiguity error


def _matches(client: ApiClient, ref: str) -> dict[str, dict]:
    """The jobs whose name is `ref` and those whose id starts with it (a few of each: enough to
    tell one from several)."""
    found: dict[str, dict] = {}
    queries = [{"name": ref}]
    if ID_CHARS.match(ref):
        queries.append({"id_prefix": ref.lower()})
    for query in queries:
        for job in client.call("GET", "/jobs", query={**query, "limit": SHOWN + 1})["jobs"]:
            found.setdefault(job["id"], job)
    return found


def _candidate(job: dict) -> str:
    name = f" ({job['name']})" if job.get("name") else ""
    return f"{job['id']}{name} {job.get('state', '')}, owner {job.get('owner', '?')}"


def resolve_job(client: ApiClient, ref: str, *, newest: bool = True) -> str:
    """The id of the one job `ref` names (a full id is taken as it is: the route says if it
    exists); with `newest`, the newest of one owner's jobs that all have the name `ref`.
    CliError with status 2 if none or several match."""
    if FULL_ID.match(ref):
        return ref
    found = _matches(client, ref)
    if len(found) == 1:
        return next(iter(found))
    if not found:
        raise CliError(f"no job has the id prefix or name {ref!r}", status=USAGE)
    listed = sorted(found.values(), key=lambda j: j["id"])
    if newest and all(j.get("name") == ref for j in listed) and len({j.get("owner") for j in listed}) == 1:
        chosen = listed[-1]  # ids grow with time
        older = len(listed) - 1
        count = f"{older} or more older jobs" if len(listed) > SHOWN else f"{older} older job{'s' if older > 1 else ''}"
        print(f"jobvisor: {ref!r} also names {count}; using the newest, {chosen['id']} "
              f"({chosen.get('state', '')}); give an id for another", file=sys.stderr)
        return chosen["id"]
    more = " ..." if len(listed) > SHOWN else ""
    lines = "\n  ".join(_candidate(j) for j in listed[:SHOWN])
    raise CliError(f"{ref!r} names more than one job; use a longer prefix or the full id:\n  {lines}{more}",
                   status=USAGE)


def resolve_jobs(client: ApiClient, refs: Iterable[str], *, newest: bool = True) -> list[str]:
    """Each reference's job id, in order, without repeats."""
    ids: list[str] = []
    for ref in refs:
        job_id = resolve_job(client, ref, newest=newest)
        if job_id not in ids:
            ids.append(job_id)
    return ids


def fetch_pages(client: ApiClient, path: str, key: str, limit: int, query: dict | None = None) -> list[dict]:
    """Up to `limit` items of a paged listing (`{key: [...], "next": cursor}`), page after page."""
    items: list[dict] = []
    after = ""
    while len(items) < limit:
        page = client.call("GET", path, query={**(query or {}), "limit": min(1000, limit - len(items)), "after": after})
        items += page[key]
        after = page.get("next")
        if not after:
            break
    return items


def fetch_jobs(client: ApiClient, states: str | None, limit: int, name: str | None = None,
               array: str | None = None) -> list[dict]:
    """Up to `limit` jobs of the filters, newest first, page after page."""
    return fetch_pages(client, "/jobs", "jobs", limit, {"state": states, "name": name, "array": array})


def array_of(client: ApiClient, ref: str) -> str:
    """The id of the job array `ref` names: its id (its first job's, as submit printed it) or a
    unique prefix of it, or the name its elements share. A job that belongs to no array is a
    usage error."""
    if not FULL_ID.match(ref):
        arrays = {job.get("array_id") for job in _matches(client, ref).values()}
        if len(arrays) == 1 and None not in arrays:
            return str(arrays.pop())  # every job the name or prefix matches is of one array
    job_id = resolve_job(client, ref)
    job = client.call("GET", f"/jobs/{job_id}")
    if not job.get("array_id"):
        raise CliError(f"job {job_id} is not part of a job array", status=USAGE)
    return str(job["array_id"])


def array_jobs(client: ApiClient, ref: str) -> list[str]:
    """The ids of every job of the array `ref` names, by index."""
    jobs = fetch_jobs(client, None, sys.maxsize, array=array_of(client, ref))
    return [job["id"] for job in sorted(jobs, key=lambda j: j.get("array_index", 0))]
