"""Run a python job: `python -m job_cmd.pyrun` in the run dir.

Reads `.jobvisor/params.json` (`entry`, `args`, `path`), imports the entry with the run dir and
the extra paths on `sys.path`, calls `function(**args)` and writes the JSON return value to
`.jobvisor/result.json`. Exit 0 on success, 1 when the function raises (traceback on stderr)
or returns something that is not JSON, 2 when the entry cannot be imported. A failure also
leaves its reason in `.jobvisor/error.json` ("ValueError: bad mesh size", "cannot import entry
'mysim:simulate': no module named 'mysim'"), which the agent reports instead of the bare exit
code (`Code.failure`).
"""

from __future__ import annotations

import importlib
import os
import sys

from jobvisor import env_names

from job_cmd.fsutil import ERROR_FILE, META_DIR, RESULT_FILE, read_json, write_json_atomic

# Imported here only when needed (traceback) or not at all (pathlib): they were a third of the
# start-up of a job whose function does nothing.

EXIT_FAILED = 1
EXIT_CANNOT_IMPORT = 2


def _exception_reason(exc: BaseException) -> str:
    # imported on failure only: jobvisor.reasons (signal, enum, resources) is 17 ms of a start
    from jobvisor.reasons import exception_reason

    return exception_reason(type(exc).__name__, str(exc))


def _fail(run_dir: str, code: int, message: str, reason: str | None = None) -> int:
    """Say why on stderr (the job's log), and leave `reason` (default: the message) for the
    agent to report as the job's."""
    sys.stdout.flush()
    print(f"jobvisor: {message}", file=sys.stderr, flush=True)
    try:
        write_json_atomic(os.path.join(run_dir, META_DIR, ERROR_FILE), {"reason": reason or message})
    except (OSError, TypeError, ValueError):
        pass  # the exit code still says it failed
    return code


def _print_exc() -> None:
    import traceback

    traceback.print_exc()


def run(run_dir: str | os.PathLike) -> int:
    run_dir = os.fspath(run_dir)
    meta = os.path.join(run_dir, META_DIR)
    try:
        params = read_json(os.path.join(meta, "params.json"))
        entry = params["entry"]
        module_name, _, func_path = entry.partition(":")
        args = params.get("args") or {}
        extra = params.get("path") or []
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        return _fail(run_dir, EXIT_CANNOT_IMPORT, f"cannot read the job's params (.jobvisor/params.json): {exc}")
    for directory in reversed([run_dir, *(os.path.join(run_dir, p) for p in extra)]):
        if directory not in sys.path:
            sys.path.insert(0, directory)
    try:
        target = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            return _fail(run_dir, EXIT_CANNOT_IMPORT, f"cannot import entry {entry!r}: no module named {exc.name!r} (sys.path: run dir + {extra})")
        _print_exc()
        return _fail(run_dir, EXIT_CANNOT_IMPORT, f"cannot import entry {entry!r}: {exc}")
    except BaseException as exc:  # SyntaxError, or anything the module raises on import
        _print_exc()
        return _fail(run_dir, EXIT_CANNOT_IMPORT, f"cannot import entry {entry!r}: {_exception_reason(exc)}")
    for attr in func_path.split("."):
        try:
            target = getattr(target, attr)
        except AttributeError:
            return _fail(run_dir, EXIT_CANNOT_IMPORT, f"cannot import entry {entry!r}: module {module_name!r} has no attribute {func_path!r}")
    if not callable(target):
        return _fail(run_dir, EXIT_CANNOT_IMPORT, f"entry {entry!r} is not callable")
    try:
        value = target(**args)
    except SystemExit:
        raise
    except BaseException as exc:
        _print_exc()
        return _fail(run_dir, EXIT_FAILED, f"{entry} raised an exception", _exception_reason(exc))
    try:
        write_json_atomic(os.path.join(meta, RESULT_FILE), value)
    except (TypeError, ValueError) as exc:
        return _fail(run_dir, EXIT_FAILED, f"the return value of {entry} is not JSON-serialisable: {exc}")
    sys.stdout.flush()
    return 0


def main() -> None:
    sys.exit(run(os.environ.get(env_names.RUN_DIR) or os.getcwd()))


if __name__ == "__main__":
    main()
