"""`submit --input FILE[:DEST]`: the files a job gets in its run dir, and the
`multipart/form-data` body that carries them with the job (streamed from disk, never read whole).

A DEST defaults to FILE itself when FILE is a relative path below the current directory
(`data/x.csv` -> `data/x.csv`), else to its name; a directory brings all its files below DEST.
Programs, files and modules the command names are found here too: `submit -- ./sim.sh`,
`submit -- python train.py` and `submit --code python --entry mysim:simulate` upload `sim.sh`,
`train.py` and `mysim.py` (or the package `mysim/`), and the modules of this directory those
python files import, when they are there and not given already, since the job runs in its own
run dir, where nothing else would find them.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import posixpath
import secrets
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jobvisor.cli.errors import CliError
from jobvisor.errors import InvalidRequest
from jobvisor.input_paths import check_input_path

READ_BYTES = 1024 * 1024
MAX_FILES_OF_A_DIR = 10_000


@dataclass(frozen=True)
class Upload:
    source: Path  # a local file
    dest: str  # its path in the run dir
    size: int


def parse_inputs(specs: list[str]) -> list[Upload]:
    """`FILE[:DEST]` options -> files to upload (a directory's files each), checked here first."""
    uploads: list[Upload] = []
    for spec in specs:
        local, sep, dest = spec.rpartition(":") if ":" in spec else (spec, "", "")
        if not sep or not local:  # no ':' (or a leading one): all of it is the file
            local, dest = spec, ""
        path = Path(local).expanduser()
        if not path.exists():
            raise CliError(f"--input {spec}: no such file or directory: {local}")
        base = dest or _default_dest(local)
        if path.is_dir():
            uploads += _directory(path, base, spec)
        else:
            uploads.append(Upload(path, _checked(base, spec), path.stat().st_size))
    seen: dict[str, Path] = {}
    for upload in uploads:
        if upload.dest in seen:
            raise CliError(f"two inputs go to {upload.dest!r}: {seen[upload.dest]} and {upload.source}")
        seen[upload.dest] = upload.source
    return uploads


def _default_dest(local: str) -> str:
    normal = posixpath.normpath(local.replace(os.sep, "/"))
    if not os.path.isabs(local) and not normal.startswith("..") and normal != ".":
        return normal
    return os.path.basename(os.path.abspath(local))


def _checked(dest: str, spec: str) -> str:
    try:
        return check_input_path(dest, field="--input")
    except InvalidRequest as exc:
        raise CliError(f"--input {spec}: {exc.detail}") from None


def _directory(root: Path, base: str, spec: str) -> list[Upload]:
    found = []
    for dirpath, _, files in os.walk(root):
        for name in sorted(files):
            full = Path(dirpath) / name
            rel = full.relative_to(root).as_posix()
            found.append(Upload(full, _checked(posixpath.join(base, rel) if base != "." else rel, spec), full.stat().st_size))
            if len(found) > MAX_FILES_OF_A_DIR:
                raise CliError(f"--input {spec}: more than {MAX_FILES_OF_A_DIR} files")
    return found


def implied_inputs(job: dict, given: list[Upload]) -> list[Upload]:
    """What the job's command names in the current directory and the inputs lack: a relative
    program (`./sim.sh`) or file argument (`python train.py`), a python entry's module
    (`mysim.py` or the package `mysim/`), and the modules of this directory those python files
    import (`helpers.py`), since the job runs in its own run dir, where nothing else would be."""
    dests = {u.dest for u in given}
    found: list[Upload] = []

    def add(path: Path, dest: str) -> None:
        if dest not in dests and not dest.startswith(".."):
            dests.add(dest)
            found.append(Upload(path, dest, path.stat().st_size))

    params = job.get("params") if isinstance(job.get("params"), dict) else {}
    argv = params.get("argv") if job.get("code") == "shell" else None
    if isinstance(argv, list) and argv:
        for i, arg in enumerate(argv):
            if _names_a_file_here(arg, program=i == 0):
                add(Path(arg), posixpath.normpath(arg))
    entry = params.get("entry") if job.get("code") == "python" else None
    if isinstance(entry, str) and ":" in entry:
        top = entry.split(":", 1)[0].split(".")[0]
        module, package = Path(f"{top}.py"), Path(top)
        if module.is_file():
            add(module, module.name)
        elif (package / "__init__.py").is_file():
            if not any(d == top or d.startswith(top + "/") for d in dests):
                for u in _directory(package, top, top):
                    if "__pycache__" not in u.dest.split("/"):
                        add(u.source, u.dest)
        elif top not in dests and not _importable(top):
            print(f"jobvisor: warning: no {top}.py or package {top}/ here, and this python cannot import "
                  f"{top!r}: the job will fail unless its agent finds it (--path DIR, or --input)", file=sys.stderr)
    for upload in list(found):
        if upload.dest.endswith(".py"):
            for module in _local_imports(upload.source):
                add(module, module.as_posix())
    for upload in found:
        print(f"jobvisor: uploading {upload.source} as {upload.dest} (the job runs in its own run dir)", file=sys.stderr)
    return found


def _names_a_file_here(arg: object, *, program: bool) -> bool:
    """Whether a command's word is a file below the current directory: the program only as a
    path (`./sim.sh`; a bare `sim` is looked up on PATH), other words as any relative path."""
    if not isinstance(arg, str) or not arg or arg.startswith("-") or os.path.isabs(arg):
        return False
    if program and "/" not in arg:
        return False
    return Path(arg).is_file()


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _local_imports(source: Path, limit: int = 200) -> list[Path]:
    """The modules of the current directory that python file `source` imports, and theirs in
    turn (absolute imports whose top name is a `NAME.py` here; at most `limit`)."""
    seen: set[Path] = set()
    todo = [source]
    while todo and len(seen) < limit:
        try:
            tree = ast.parse(todo.pop().read_bytes())
        except (SyntaxError, ValueError, OSError):
            continue  # not ours to judge: the job says so when it runs
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                module = Path(name.split(".")[0] + ".py")
                if module.is_file() and module not in seen and module != source:
                    seen.add(module)
                    todo.append(module)
    return sorted(seen)


def parse_env(items: list[str]) -> dict[str, str]:
    """`--env K=V` (or `--env K`: K's value here) -> the job's env."""
    env: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not key:
            raise CliError(f"--env {item}: give NAME=VALUE, or NAME to pass this shell's value")
        if not sep:
            if key not in os.environ:
                raise CliError(f"--env {key}: {key} is not set here (give {key}=VALUE)")
            value = os.environ[key]
        env[key] = value
    return env


class Form:
    """A multipart/form-data body: the `job` part (JSON) and one `file` part per upload, made
    as the request is sent; `length` is known ahead (Content-Length)."""

    def __init__(self, job: Any, uploads: list[Upload]) -> None:
        self.boundary = "jobvisor-" + secrets.token_hex(16)
        self._job = json.dumps(job).encode()
        self.uploads = uploads
        self.content_type = f"multipart/form-data; boundary={self.boundary}"
        self.length = len(self._head("job", None, "application/json")) + len(self._job) + 2 + sum(
            len(self._head("file", u.dest, "application/octet-stream")) + u.size + 2 for u in uploads
        ) + len(self._tail())

    def _head(self, name: str, filename: str | None, content_type: str) -> bytes:
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{_quote(filename)}"'
        return (f"--{self.boundary}\r\nContent-Disposition: {disposition}\r\n"
                f"Content-Type: {content_type}\r\n\r\n").encode()

    def _tail(self) -> bytes:
        return f"--{self.boundary}--\r\n".encode()

    def __iter__(self) -> Iterator[bytes]:
        yield self._head("job", None, "application/json") + self._job + b"\r\n"
        for upload in self.uploads:
            yield self._head("file", upload.dest, "application/octet-stream")
            sent = 0
            with open(upload.source, "rb") as f:
                while chunk := f.read(READ_BYTES):
                    sent += len(chunk)
                    yield chunk
            if sent != upload.size:
                raise CliError(f"{upload.source} changed size while it was uploaded")
            yield b"\r\n"
        yield self._tail()


def _quote(name: str) -> str:
    if any(c in name for c in '"\r\n\\'):
        raise CliError(f"input path {name!r} has a quote, backslash or line break")
    return name
