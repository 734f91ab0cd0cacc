"""agent.spawn and agent.libc_spawn: a job's program started in its run dir, output to its log,
in its own process group, with Popen's signal resets and the job's own PATH; both ways of
spawning (os.posix_spawn on the loop, the C library's with a chdir action) pass the same tests."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from agent import libc_spawn
from agent.spawn import RESET_SIGNALS, Child, ProgramCache, Spawner, close_inherited_fds, resolve_program

Run = Callable[[list[str], Path, dict[str, str]], tuple[int, str]]


def _wait(child: Child) -> int:
    deadline = time.monotonic() + 10
    while child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert child.returncode is not None, "the child did not end"
    return child.returncode


def _with_spawner(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[int, str]:
    log = cwd / "out.log"
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND | os.O_CLOEXEC, 0o600)  # as the runner does
    try:
        child = Spawner().spawn(argv, cwd, env, fd)
    finally:
        os.close(fd)
    return _wait(child), log.read_text()


def _with_libc(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[int, str]:
    lib = libc_spawn.load(RESET_SIGNALS)
    assert lib is not None, "this C library has no posix_spawn_file_actions_addchdir_np"
    program = resolve_program(argv[0], env.get("PATH", os.defpath), cwd)
    envp = [f"{k}={v}".encode() for k, v in env.items()]
    log = cwd / "out.log"  # created by the child
    pid = lib.spawn(os.fsencode(program), [a.encode() for a in argv], envp, os.fsencode(cwd), os.fsencode(log))
    return _wait(Child(pid)), log.read_text()


@pytest.fixture(params=["os.posix_spawn", "libc"])
def run(request) -> Run:
    return _with_spawner if request.param == "os.posix_spawn" else _with_libc


def test_runs_in_the_run_dir_and_leaves_the_agent_where_it_was(tmp_path: Path, run: Run):
    here = os.getcwd()
    (tmp_path / "prog.sh").write_text("#!/bin/sh\npwd -P\nexit 4\n")
    (tmp_path / "prog.sh").chmod(0o755)
    code, out = run(["./prog.sh"], tmp_path, dict(os.environ))  # relative to the run dir
    assert code == 4 and out.strip() == os.path.realpath(tmp_path)
    assert os.getcwd() == here


def test_own_process_group_stdin_from_dev_null_stderr_in_the_log(tmp_path: Path, run: Run):
    script = 'ps -o pid=,pgid= -p $$; read line || echo "stdin empty"; echo oops >&2'
    code, out = run(["sh", "-c", script], tmp_path, dict(os.environ))
    lines = out.splitlines()
    pid, pgid = lines[0].split()
    assert code == 0 and pid == pgid and pgid != str(os.getpgrp())
    assert lines[1:] == ["stdin empty", "oops"]


def test_the_log_is_truncated_for_a_new_start(tmp_path: Path, run: Run):
    (tmp_path / "out.log").write_text("old bytes\n")
    assert run(["echo", "new"], tmp_path, dict(os.environ)) == (0, "new\n")


def test_signals_python_ignores_are_default_in_the_job(tmp_path: Path, run: Run):
    code, out = run(["grep", "SigIgn", "/proc/self/status"], tmp_path, dict(os.environ))
    assert code == 0
    ignored = int(out.split()[1], 16)
    assert not ignored & (1 << (signal.SIGPIPE - 1))


def test_the_jobs_own_path_is_searched(tmp_path: Path, run: Run):
    bin_dir = tmp_path / "mybin"
    bin_dir.mkdir()
    (bin_dir / "hello-jv").write_text("#!/bin/sh\necho hi\n")
    (bin_dir / "hello-jv").chmod(0o755)
    code, out = run(["hello-jv"], tmp_path, {"PATH": f"{bin_dir}:/usr/bin:/bin"})
    assert (code, out) == (0, "hi\n")
    with pytest.raises(FileNotFoundError):
        run(["hello-jv-missing"], tmp_path, {"PATH": f"{bin_dir}:/usr/bin:/bin"})


def test_a_missing_run_dir_fails_the_start_and_changes_nothing(tmp_path: Path):
    here = os.getcwd()
    fd = os.open(tmp_path / "log", os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        with pytest.raises(FileNotFoundError):
            Spawner().spawn(["true"], tmp_path / "gone", dict(os.environ), fd)
    finally:
        os.close(fd)
    assert os.getcwd() == here
    lib = libc_spawn.load(RESET_SIGNALS)
    assert lib is not None
    with pytest.raises(FileNotFoundError):
        lib.spawn(b"/bin/true", [b"true"], [], os.fsencode(tmp_path / "gone"), os.fsencode(tmp_path / "log2"))
    with pytest.raises(FileNotFoundError) as missing:
        lib.spawn(b"/nonexistent/prog", [b"prog"], [], os.fsencode(tmp_path), os.fsencode(tmp_path / "log3"))
    assert missing.value.filename == "/nonexistent/prog"


def test_program_cache_remembers_for_its_ttl_only(tmp_path: Path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    prog = bin_dir / "tool-jv"
    prog.write_text("#!/bin/sh\n")
    prog.chmod(0o755)
    cache = ProgramCache(ttl=0.2)
    path = f"{bin_dir}:/usr/bin:/bin"
    assert cache.resolve("tool-jv", path, tmp_path) == str(prog)
    prog.unlink()
    assert cache.resolve("tool-jv", path, tmp_path) == str(prog)  # remembered
    time.sleep(0.25)
    with pytest.raises(FileNotFoundError):
        cache.resolve("tool-jv", path, tmp_path)
    assert cache.resolve("./x", path, tmp_path) == "./x"  # a path is not searched


def test_program_cache_does_not_remember_paths_relative_to_the_run_dir(tmp_path: Path):
    for name in ("a", "b"):
        (tmp_path / name / "bin").mkdir(parents=True)
        (tmp_path / name / "bin" / "tool-jv").write_text("#!/bin/sh\n")
        (tmp_path / name / "bin" / "tool-jv").chmod(0o755)
    cache = ProgramCache()
    assert cache.resolve("tool-jv", "bin:/usr/bin", tmp_path / "a") == str(tmp_path / "a" / "bin" / "tool-jv")
    assert cache.resolve("tool-jv", "bin:/usr/bin", tmp_path / "b") == str(tmp_path / "b" / "bin" / "tool-jv")


def test_inherited_descriptors_become_close_on_exec(tmp_path: Path):
    fd = os.open(tmp_path / "f", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        os.set_inheritable(fd, True)
        close_inherited_fds()
        assert not os.get_inheritable(fd)
    finally:
        os.close(fd)


def test_an_env_block_is_shared_and_the_job_adds_its_own(tmp_path: Path):
    lib = libc_spawn.load(RESET_SIGNALS)
    assert lib is not None
    block = libc_spawn.EnvBlock([b"A=1", b"B=2"])
    outs = []
    for n in range(2):  # the block is copied for each spawn, never changed
        envp = block.with_extra([f"JOB={n}".encode()])
        log = tmp_path / f"env{n}.log"
        pid = lib.spawn(b"/usr/bin/env", [b"env"], envp, os.fsencode(tmp_path), os.fsencode(log))
        assert _wait(Child(pid)) == 0
        outs.append(log.read_text().splitlines())
    assert outs == [["A=1", "B=2", "JOB=0"], ["A=1", "B=2", "JOB=1"]]
