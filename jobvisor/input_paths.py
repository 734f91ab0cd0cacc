"""The rule for where an input file may go: a relative path inside the job's run dir.

Checked where a path enters (the gateway's multipart form, the supervisor's upload, a job's
spec) and again by the agent that writes the file, so a path that would escape the run dir is
refused by whoever sees it first. Symbolic links inside the run dir are the agent's to refuse
(it opens each directory on the way without following links).
"""

from __future__ import annotations

import posixpath

from jobvisor.errors import InvalidRequest

MAX_INPUT_PATH = 1024  # characters: far more than any real name, and bounded for the wire
# What the agent itself keeps in a run dir: an input must not replace them.
RESERVED = frozenset({".jobvisor", "output.log"})


def check_input_path(path: object, field: str = "path") -> str:
    """The normalized relative path (`a/./b` -> `a/b`); InvalidRequest naming `field` for a path
    that is empty, absolute, has a `..` part, or names a file the agent keeps there."""
    if not isinstance(path, str) or not path.strip():
        raise InvalidRequest("an input's path must be a non-empty string", field=field)
    if len(path) > MAX_INPUT_PATH:
        raise InvalidRequest(f"an input's path is longer than {MAX_INPUT_PATH} characters", field=field)
    if "\0" in path:
        raise InvalidRequest("an input's path contains a NUL character", field=field)
    if path.startswith("/"):
        raise InvalidRequest(f"input path {path!r} is absolute; give a path inside the run dir", field=field)
    parts = path.split("/")
    if ".." in parts:
        raise InvalidRequest(f"input path {path!r} has a '..' part; it must stay inside the run dir", field=field)
    normal = posixpath.normpath(path)
    if normal in (".", "") or normal.startswith("/") or normal.startswith(".."):
        raise InvalidRequest(f"input path {path!r} does not name a file inside the run dir", field=field)
    if normal.split("/")[0] in RESERVED:
        raise InvalidRequest(f"input path {path!r} is reserved for jobvisor's own files", field=field)
    return normal
