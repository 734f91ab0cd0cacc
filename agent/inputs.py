"""Placing a job's input files in its run dir before it starts (`RunJob.inputs`, `InputChunk`).

Each path is checked again here (`jobvisor.input_paths`), and every directory on the way is
opened relative to the one before without following symbolic links, so neither a crafted path
nor a link the job left in its run dir (a rerun) can make the agent write outside it. A file is
replaced, never written through: a rerun's input does not change a file that another path (or
the supervisor's stored copy, for a hard link) shares. Inputs are made executable by their
owner, so an uploaded script runs as `./sim.sh` without a chmod.
"""

from __future__ import annotations

import errno
import os
import shutil

from jobvisor.errors import InvalidRequest
from jobvisor.input_paths import check_input_path
from jobvisor.protocol.agent_wire import InputFile

INPUT_MODE = 0o700
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class InputError(Exception):
    """An input could not be placed; the message names the file and says why (the job's reason)."""


def place_inputs(run_dir: str, inputs: list[InputFile]) -> None:
    """Write, link or check each input under `run_dir` (which exists); InputError for the first
    that cannot be placed."""
    for item in inputs:
        name = _checked(item.path)
        try:
            parent, leaf = _open_parent(run_dir, name)
            try:
                if item.data is not None:
                    _write_new(parent, leaf, item.data)
                elif item.source is not None:
                    _link_or_copy(item.source, parent, leaf)
                else:  # sent ahead in chunks: it must be there
                    os.stat(leaf, dir_fd=parent, follow_symlinks=False)
            finally:
                os.close(parent)
        except OSError as exc:
            raise InputError(_reason(name, item, exc)) from None


def write_chunk(run_dir: str, path: str, offset: int, data: bytes) -> None:
    """Bytes of an input sent ahead of its run: a new file at offset 0 (the run dir made if
    needed), appended at the offset after."""
    name = _checked(path)
    if offset < 0:
        raise InputError(f"input {name!r}: negative offset {offset}")
    try:
        if offset == 0:
            os.makedirs(run_dir, mode=0o700, exist_ok=True)
        parent, leaf = _open_parent(run_dir, name)
        try:
            if offset == 0:
                _write_new(parent, leaf, data)
                return
            fd = os.open(leaf, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
            try:
                _write_all(fd, data, offset)
            finally:
                os.close(fd)
        finally:
            os.close(parent)
    except OSError as exc:
        raise InputError(f"cannot write input {name!r}: {exc.strerror or exc}") from None


def _checked(path: str) -> str:
    try:
        return check_input_path(path)
    except InvalidRequest as exc:
        raise InputError(exc.detail) from None


def _open_parent(run_dir: str, name: str) -> tuple[int, str]:
    """A descriptor of the directory that holds `name` (made as needed) and the leaf's name."""
    *dirs, leaf = name.split("/")
    fd = os.open(run_dir, _DIR_FLAGS)
    try:
        for part in dirs:
            try:
                os.mkdir(part, 0o700, dir_fd=fd)
            except FileExistsError:
                pass
            child = os.open(part, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd, leaf


def _unlink(parent: int, leaf: str) -> None:
    try:
        os.unlink(leaf, dir_fd=parent)
    except FileNotFoundError:
        pass


def _write_new(parent: int, leaf: str, data: bytes) -> None:
    _unlink(parent, leaf)
    fd = os.open(leaf, _NEW_FILE, INPUT_MODE, dir_fd=parent)
    try:
        _write_all(fd, data, 0)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written


def _link_or_copy(source: str, parent: int, leaf: str) -> None:
    _unlink(parent, leaf)
    try:
        os.link(source, leaf, dst_dir_fd=parent)
        return
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.EACCES, errno.ENOTSUP):
            raise
    with open(source, "rb") as src:
        fd = os.open(leaf, _NEW_FILE, INPUT_MODE, dir_fd=parent)
        with open(fd, "wb") as dst:
            shutil.copyfileobj(src, dst, 1024 * 1024)


def _reason(name: str, item: InputFile, exc: OSError) -> str:
    why = exc.strerror or str(exc)
    if exc.errno == errno.ELOOP or exc.errno == errno.ENOTDIR:
        why = "a part of its path in the run dir is a symbolic link or a file"
    if item.source is not None and exc.filename == item.source:
        return f"cannot place input {name!r} from {item.source}: {why}"
    if item.data is None and item.source is None and exc.errno == errno.ENOENT:
        return f"input {name!r} did not arrive (its chunks are missing)"
    return f"cannot place input {name!r}: {why}"
