"""Analysis of a run: `python -m job_cmd.analysis CODE RUN_DIR`, args JSON on stdin.

Runs in its own process (the agent gives it a timeout), so a slow analysis never blocks the
agent. On success prints the result JSON on stdout and exits 0; on failure prints
`{"error": {"kind", "detail", "field"}}` on stdout and exits 1.
"""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path

from jobvisor.errors import ErrorKind, InvalidRequest, OpError, PathEscape

from job_cmd.codes.registry import get_code

EXIT_FAILED = 1


def analyze(code_name: str, run_dir: Path, args: dict) -> dict:
    if not isinstance(args, dict):
        raise InvalidRequest("analysis args must be a JSON object", field="args")
    return get_code(code_name).analyze(run_dir, args)


def _error(kind: str, detail: str, field: str | None = None) -> int:
    print(json.dumps({"error": {"kind": kind, "detail": detail, "field": field}}))
    return EXIT_FAILED


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print("usage: python -m job_cmd.analysis CODE RUN_DIR < args.json", file=sys.stderr)
        return 2
    code_name, run_dir = argv
    raw = sys.stdin.read()
    try:
        args = json.loads(raw) if raw.strip() else {}
        result = analyze(code_name, Path(run_dir), args)
        out = json.dumps(result, allow_nan=False)
    except json.JSONDecodeError as exc:
        return _error(str(ErrorKind.INVALID), f"analysis args are not JSON: {exc}", "args")
    except OpError as exc:
        return _error(str(exc.kind), exc.detail, exc.field)
    except PathEscape as exc:
        return _error(str(ErrorKind.FORBIDDEN), str(exc))
    except (TypeError, ValueError) as exc:
        return _error(str(ErrorKind.INTERNAL), f"the analysis result is not JSON: {exc}")
    except Exception as exc:
        traceback.print_exc()
        return _error(str(ErrorKind.INTERNAL), f"analysis of code {code_name!r} failed: {type(exc).__name__}: {exc}")
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
