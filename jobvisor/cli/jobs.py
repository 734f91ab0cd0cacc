"""Client commands about one job's inputs and outputs: submit, logs, files, get, analysis.
(`list` and `show` are in `listing`, `wait` and `cancel` in `waiting`.)"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.parse
from pathlib import Path
from typing import Any

from jobvisor.cli import fmt, uploads
from jobvisor.cli.client import add_client_arguments, client_from_args
from jobvisor.cli.errors import CliError
from jobvisor.cli.keyvalues import parse_key_values
from jobvisor.cli.job_extras import add_submit_options, print_submitted, submit_fields
from jobvisor.cli.resolve import USAGE, resolve_job
from jobvisor.reasons import describe_end

SLURM_OPTIONS = ("cluster", "partition", "qos", "account", "constraint")
JOB_HELP = "job id, unique id prefix or unique name"


# --------------------------------------------------------------------------- submit


def build_job(args: argparse.Namespace) -> dict:
    """The job object `submit` sends, from its options (pure: tested without a gateway)."""
    argv = list(args.argv or [])
    if argv and argv[0] == "--":
        argv = argv[1:]
    params: Any = None
    if args.params is not None:
        try:
            params = json.loads(args.params)
        except ValueError as exc:
            raise CliError(f"--params is not valid JSON: {exc}") from None
    code = args.code
    if args.entry:
        code = code or "python"
        params = {"entry": args.entry, "args": params if params is not None else {}}
        if args.path:
            params["path"] = list(args.path)
    elif args.path:
        raise CliError("--path is for python jobs (with --entry)")
    elif argv:
        code = code or "shell"
        params = {"argv": argv} if params is None else {**params, "argv": argv}
    if not code:
        raise CliError("nothing to run: give a command after `--`, or --code with --params (or --entry)")
    job: dict[str, Any] = {"code": code, "params": params if params is not None else {}}
    resources: dict[str, Any] = {}
    if args.cpus is not None:
        resources["cpus"] = args.cpus
    if args.mem:
        resources["memory"] = args.mem
    if args.walltime:
        if args.walltime.strip().isdigit():  # Slurm's --time=30 is 30 minutes; the API's 30 is seconds
            raise CliError(f"--walltime {args.walltime}: say its unit: {args.walltime}m (minutes, as Slurm's "
                           f"--time={args.walltime}) or {args.walltime}s; or HH:MM:SS", status=USAGE)
        resources["walltime"] = args.walltime
    for key in SLURM_OPTIONS:  # sbatch driver: where and under which allocation
        value = getattr(args, key, None)
        if value:
            resources[key] = value
    if resources:
        job["resources"] = resources
    if args.driver:
        job["driver"] = args.driver
    if args.name:
        job["name"] = args.name
    job.update(submit_fields(args))
    if args.env:
        job["env"] = uploads.parse_env(args.env)
    if args.workdir:
        job["workdir"] = os.path.abspath(os.path.expanduser(args.workdir))
    return job


def cmd_submit(args: argparse.Namespace) -> int:
    job = build_job(args)
    files = uploads.parse_inputs(args.input or [])
    if not args.workdir:  # in place, the job finds its program where it is
        files += uploads.implied_inputs(job, files)
    client = client_from_args(args)
    if files:
        created = client.call("POST", "/jobs", form=uploads.Form(job, files))
    else:
        created = client.call("POST", "/jobs", body=job)
    print_submitted(created)
    return 0


# --------------------------------------------------------------------------- logs


def cmd_logs(args: argparse.Namespace) -> int:
    client = client_from_args(args)
    args.id = resolve_job(client, args.id)
    out = sys.stdout
    path, accept = f"/jobs/{args.id}/log", "text/plain"
    if args.attempt is not None:
        job = client.call("GET", f"/jobs/{args.id}")
        if not 1 <= args.attempt <= job["attempt"]:
            raise CliError(f"--attempt {args.attempt}: job {args.id} has had attempts 1 to {job['attempt']}", status=USAGE)
        if args.attempt < job["attempt"]:  # an earlier attempt's log, kept in the run dir
            if args.follow:
                raise CliError("--follow reads the current attempt's log; drop --follow or --attempt", status=USAGE)
            path, accept = f"/jobs/{args.id}/files/output.{args.attempt}.log", "*/*"
    if not args.follow:
        with client.open("GET", path, accept=accept) as resp:
            while chunk := resp.read(64 * 1024):
                out.buffer.write(chunk)
        out.flush()
        return 0
    offset = 0
    while True:
        try:
            with client.events(f"/jobs/{args.id}/log", query={"follow": 1, "offset": offset}) as stream:
                for kind, data, _ in stream:
                    if kind == "log":
                        out.write(data["text"])
                        out.flush()
                        offset = data["next"]
                    elif kind == "end":
                        if not args.quiet:
                            print(f"[{describe_end(data['state'], data.get('exit_code'), data.get('reason') or '')}]",
                                  file=sys.stderr)
                        return 0
                    elif kind == "error":
                        raise CliError(f"log stream failed: {data.get('detail')}")
        except TimeoutError:
            pass  # idle past heartbeats: reconnect from where we are
        time.sleep(0.5)


# --------------------------------------------------------------------------- files, analysis


def cmd_files(args: argparse.Namespace) -> int:
    client = client_from_args(args)
    reply = client.call("GET", f"/jobs/{resolve_job(client, args.id)}/files")
    rows = [[f["path"], f["size"], fmt.short_time(f.get("mtime"))] for f in reply["files"]]
    print(fmt.table(rows, ["PATH", "SIZE", "MODIFIED"]))
    return 0


def output_path(path: str, output: str | None, force: bool) -> Path:
    """Where `get` writes the job's file `path`: `output`, or into it if it is a directory, or
    the file's own name here. Checked before anything is downloaded: its directory must exist,
    and an existing file is replaced only with --force."""
    target = Path(output or Path(path).name)
    if target.is_dir():
        target = target / Path(path).name
    if not target.parent.is_dir():
        raise CliError(f"cannot write {target}: the directory {target.parent} does not exist", status=USAGE)
    if target.exists() and not force:
        raise CliError(f"{target} exists; --force replaces it", status=USAGE)
    return target


def cmd_get(args: argparse.Namespace) -> int:
    client = client_from_args(args)
    job_id = resolve_job(client, args.id)
    quoted = "/".join(urllib.parse.quote(p) for p in args.path.split("/"))
    target = None if args.output == "-" else output_path(args.path, args.output, args.force)
    with client.open("GET", f"/jobs/{job_id}/files/{quoted}", accept="*/*") as resp:
        if target is None:
            while chunk := resp.read(256 * 1024):
                sys.stdout.buffer.write(chunk)
            sys.stdout.flush()
            return 0
        tmp = target.with_name(target.name + ".part")
        try:
            with open(tmp, "wb") as fh:
                while chunk := resp.read(256 * 1024):
                    fh.write(chunk)
            os.replace(tmp, target)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise CliError(f"cannot write {target}: {exc.strerror or exc}") from None
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    print(target, file=sys.stderr)
    return 0


def cmd_analysis(args: argparse.Namespace) -> int:
    client = client_from_args(args)
    job_id = resolve_job(client, args.id)
    reply = client.call("POST", f"/jobs/{job_id}/analysis", body=parse_key_values(args.arg or [], "--arg"))
    result = reply.get("result")
    print(result if isinstance(result, str) else json.dumps(result, indent=2))
    return 0


# --------------------------------------------------------------------------- parsers


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("submit", help="submit a job; prints its id",
                              description="Submit a job. `-- argv...` runs a command (code shell).")
    p.add_argument("--code", help="code to run: shell, python, demo or a plugin (default: shell with argv)")
    p.add_argument("--driver", help="local, docker, sbatch (default: the server's)")
    p.add_argument("--cpus", type=int)
    p.add_argument("--mem", help="memory, e.g. 512M or 2G; a bare number is megabytes, as in Slurm (--mem 512 = 512M)")
    p.add_argument("--walltime", help="the most it may run: HH:MM:SS, MM:SS, D-HH:MM:SS or units (1h30m, 90m, "
                                      "45s); a bare number is refused, as Slurm reads it as minutes")
    for key in SLURM_OPTIONS:
        p.add_argument(f"--{key}", help=f"sbatch driver: Slurm {key}" if key != "cluster" else "sbatch driver: the cluster")
    p.add_argument("--name")
    add_submit_options(p)
    p.add_argument("--entry", help="python code: module:function to call")
    p.add_argument("--params", help="params as JSON (python: the function's args)")
    p.add_argument("--input", action="append", metavar="FILE[:DEST]",
                   help="upload FILE (or a directory's files) into the run dir at DEST before the job starts "
                        "(default: FILE's relative path, else its name); repeat for more. A relative program "
                        "(-- ./sim.sh) or a python entry's module (mysim.py) found here is uploaded too")
    p.add_argument("--env", action="append", metavar="K=V",
                   help="set an environment variable of the job (K alone: this shell's value); repeat for more. "
                        "Wins over a shell job's params.env")
    p.add_argument("--workdir", metavar="DIR",
                   help="local driver: run in DIR itself instead of a fresh run dir (only under a directory "
                        "the server's [local] workdirs allows; the output log stays in the run dir)")
    p.add_argument("--path", action="append", metavar="DIR",
                   help="python jobs: add DIR to sys.path (relative: inside the run dir, e.g. uploaded with "
                        "--input; absolute: where the agent runs); repeat for more")
    p.add_argument("argv", nargs="*", help="the command (after --)")
    add_client_arguments(p)
    p.set_defaults(func=cmd_submit)

    p = subparsers.add_parser("logs", help="print a job's output log")
    p.add_argument("id", metavar="JOB", help=JOB_HELP)
    p.add_argument("-f", "--follow", action="store_true", help="keep printing until the job ends")
    p.add_argument("-q", "--quiet", action="store_true", help="no final state line on stderr")
    p.add_argument("--attempt", type=int, metavar="N",
                   help="an earlier attempt's log (a retried job's run dir keeps each as output.N.log); "
                        "default: the current attempt's")
    add_client_arguments(p)
    p.set_defaults(func=cmd_logs)

    p = subparsers.add_parser("files", help="list the files of a job's run dir")
    p.add_argument("id", metavar="JOB", help=JOB_HELP)
    add_client_arguments(p)
    p.set_defaults(func=cmd_files)

    p = subparsers.add_parser("get", help="download a file of a job's run dir")
    p.add_argument("id", metavar="JOB", help=JOB_HELP)
    p.add_argument("path", help="the file's path in the run dir (see `jobvisor files`)")
    p.add_argument("-o", "--output", help="where to write it: a file, or into an existing directory "
                   "('-': stdout; default: the file's name here). Its directory must exist")
    p.add_argument("-f", "--force", action="store_true", help="replace a file that exists")
    add_client_arguments(p)
    p.set_defaults(func=cmd_get)

    p = subparsers.add_parser("analysis", help="run the job's code's analysis on its run dir; prints the result",
                              description="Run the analysis of the job's code (e.g. the demo's) on its run "
                                          "dir, and print what it returns (JSON).")
    p.add_argument("id", metavar="JOB", help=JOB_HELP)
    p.add_argument("--arg", action="append", metavar="KEY=VALUE",
                   help="an argument of the analysis (repeatable); VALUE is read as JSON if it can be, else a string")
    add_client_arguments(p)
    p.set_defaults(func=cmd_analysis)
