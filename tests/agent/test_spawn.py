"""agent.spawn: posix_spawn in the run dir, with Popen's signal resets and PATH search."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from agent.spawn import Spawner, close_inherited_fds


def run(spawner: Spawner, argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[int, str]:
    log = cwd / "out.log"
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
    try:
        child = spawner.spawn(argv, cwd, env, fd)
    finally:
        os.close(fd)
    deadline = time.monotonic() + 10
    while child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    return child.returncode, log.read_text()


def test_runs_in_the_run_dir_and_leaves_the_agent_where_it_was(tmp_path: Path):
    spawner = Spawner()
    here = os.getcwd()
    (tmp_path / "prog.sh").write_text("#!/bin/sh\npwd -P\nexit 4\n")
    (tmp_path / "prog.sh").chmod(0o755)
    code, out = run(spawner, ["./prog.sh"], tmp_path, dict(os.environ))  # relative to the run dir
    assert code == 4 and out.strip() == os.path.realpath(tmp_path)
    assert os.getcwd() == here


def test_signals_python_ignores_are_default_in_the_job(tmp_path: Path):
    code, out = run(Spawner(), ["grep", "SigIgn", "/proc/self/status"], tmp_path, dict(os.environ))
    assert code == 0
    ignored = int(out.split()[1], 16)
    assert not ignored & (1 << (signal.SIGPIPE - 1))


def test_the_jobs_own_path_is_searched(tmp_path: Path):
    bin_dir = tmp_path / "mybin"
    bin_dir.mkdir()
    (bin_dir / "hello-jv").write_text("#!/bin/sh\necho hi\n")
    (bin_dir / "hello-jv").chmod(0o755)
    code, out = run(Spawner(), ["hello-jv"], tmp_path, {"PATH": f"{bin_dir}:/usr/bin:/bin"})
    assert (code, out) == (0, "hi\n")
    with pytest.raises(FileNotFoundError):
        run(Spawner(), ["hello-jv-missing"], tmp_path, {"PATH": f"{bin_dir}:/usr/bin:/bin"})


def test_a_missing_run_dir_fails_the_start_and_changes_nothing(tmp_path: Path):
    here = os.getcwd()
    fd = os.open(tmp_path / "log", os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        with pytest.raises(FileNotFoundError):
            Spawner().spawn(["true"], tmp_path / "gone", dict(os.environ), fd)
    finally:
        os.close(fd)
    assert os.getcwd() == here


def test_inherited_descriptors_become_close_on_exec(tmp_path: Path):
    fd = os.open(tmp_path / "f", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        os.set_inheritable(fd, True)
        close_inherited_fds()
        assert not os.get_inheritable(fd)
    finally:
        os.close(fd)
