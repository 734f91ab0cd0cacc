"""Reads from a run dir, confined to it.

Every path is relative to the run dir. Absolute paths, `..` components and symlinks whose
target leaves the run dir raise `PathEscape`. The file is opened component by component from
the run dir with `O_NOFOLLOW` after a `realpath` check, so a symlink swapped in between the check
and the open is refused too. A missing file raises `NotFound`.
"""

from __future__ import annotations

import errno
import os
import stat

from jobvisor.errors import InvalidRequest, NotFound, PathEscape
from jobvisor.limits import IO_CHUNK_BYTES

from job_cmd.fsutil import META_DIR, PROGRESS_FILE

_O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_O_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK  # NONBLOCK: a fifo must not hang us


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _parts(path: str) -> list[str]:
    if not isinstance(path, str) or not path or "\x00" in path:
        raise InvalidRequest("path must be a non-empty path relative to the run dir", field="path")
    if path.startswith("/") or os.path.isabs(path):
        raise PathEscape(f"path {path!r} is absolute: give a path relative to the run dir")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise PathEscape(f"path {path!r} contains '..': paths must stay inside the run dir")
    if not parts:
        raise InvalidRequest(f"path {path!r} names the run dir itself, not a file", field="path")
    return parts


def _root(run_dir: str | os.PathLike) -> str:
    root = os.path.realpath(run_dir)
    if not os.path.isdir(root):
        raise NotFound("the job's run dir does not exist (yet)")
    return root


def open_confined(run_dir: str | os.PathLike, path: str) -> int:
    """A read-only fd of the regular file `path` inside `run_dir`; the caller closes it."""
    parts = _parts(path)
    root = _root(run_dir)
    real = os.path.realpath(os.path.join(root, *parts))
    if not _inside(real, root):
        raise PathEscape(f"path {path!r} leads outside the run dir (through a symlink)")
    rel = os.path.relpath(real, root).split(os.sep)
    if rel == ["."]:
        raise InvalidRequest(f"path {path!r} is the run dir itself, not a file", field="path")
    dir_fd = os.open(root, _O_DIR)
    try:
        for component in rel[:-1]:
            next_fd = os.open(component, _O_DIR, dir_fd=dir_fd)
            os.close(dir_fd)
            dir_fd = next_fd
        fd = os.open(rel[-1], _O_FILE, dir_fd=dir_fd)
    except FileNotFoundError:
        raise NotFound(f"no file {path!r} in the run dir") from None
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.EMLINK):
            raise PathEscape(f"path {path!r} changed into a symlink while being opened") from None
        if exc.errno == errno.ENOTDIR:
            raise NotFound(f"no file {path!r} in the run dir") from None
        raise
    finally:
        os.close(dir_fd)
    try:
        st = os.fstat(fd)
    except OSError:
        os.close(fd)
        raise
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        what = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file"
        raise InvalidRequest(f"path {path!r} is {what}", field="path")
    return fd


def read_file(run_dir: str | os.PathLike, path: str, offset: int = 0, length: int = IO_CHUNK_BYTES) -> dict:
    """`{"data": bytes, "offset": offset, "size": file size}`: at most `length` bytes (and at
    most `IO_CHUNK_BYTES`) of `path` from `offset`; empty data at or past the end."""
    if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
        raise InvalidRequest("offset must be a whole number >= 0", field="offset")
    if not isinstance(length, int) or isinstance(length, bool) or length < 0:
        raise InvalidRequest("length must be a whole number >= 0", field="length")
    fd = open_confined(run_dir, path)
    try:
        size = os.fstat(fd).st_size
        data = os.pread(fd, min(length, IO_CHUNK_BYTES), offset) if offset < size else b""
    finally:
        os.close(fd)
    return {"data": data, "offset": offset, "size": size}


def list_files(run_dir: str | os.PathLike, limit: int | None = None) -> list[dict]:
    """Every regular file below `run_dir` as `{"path", "size", "mtime"}`, in walk order
    (sorted within each directory, a directory's files before its subdirectories).

    Paths are relative with `/` separators; `.jobvisor/` and the progress file are skipped; a
    symlink is listed (with
    its target's size) only if its target is a regular file inside the run dir; symlinked
    directories are not entered. At most `limit` entries when given.
    """
    root = _root(run_dir)
    out: list[dict] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        if dirpath == root:
            if META_DIR in dirnames:
                dirnames.remove(META_DIR)
            if PROGRESS_FILE in filenames:
                filenames.remove(PROGRESS_FILE)
        dirnames.sort()
        for name in sorted(filenames):
            full = os.path.join(dirpath, name)
            try:
                st = os.lstat(full)
                if stat.S_ISLNK(st.st_mode):
                    if not _inside(os.path.realpath(full), root):
                        continue
                    st = os.stat(full)
            except OSError:  # vanished meanwhile, or a dangling link
                continue
            if not stat.S_ISREG(st.st_mode):
                continue
            rel = os.path.relpath(full, root).replace(os.sep, "/")
            out.append({"path": rel, "size": st.st_size, "mtime": st.st_mtime})
            if limit is not None and len(out) >= limit:
                return out
    return out
