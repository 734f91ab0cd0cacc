"""The real agent process places a job's inputs, env and working directory before the start."""

import os
import sys

from jobvisor.protocol.agent_wire import InputChunk, InputFile, RunJob

from tests.agent.stub_supervisor import AgentProcess


def run(job_id, run_dir, params, **kw):
    return RunJob(job_id, 1, "shell", params, {}, str(run_dir), **kw)


async def test_inputs_are_written_linked_or_assembled_before_the_start(supervisor, start_agent, tmp_path):
    start_agent()
    source = tmp_path / "stored.txt"
    source.write_text("from the supervisor\n")
    big = os.urandom(300_000)
    run_dir = tmp_path / "j1"
    await supervisor.send(
        InputChunk("j1", 1, str(run_dir), "data/big.bin", 0, big[:100_000]),
        InputChunk("j1", 1, str(run_dir), "data/big.bin", 100_000, big[100_000:]),
        run("j1", run_dir, {"script": "./sim.sh && cat linked.txt && wc -c < data/big.bin"},
            inputs=[InputFile("sim.sh", data=b"#!/bin/sh\necho sim ran\n"), InputFile("linked.txt", source=str(source)),
                    InputFile("data/big.bin")]),
    )
    done = await supervisor.status("j1", "completed")
    assert done.report.exit_code == 0
    assert bytes(supervisor.logs["j1"]).decode().split("\n")[:3] == ["sim ran", "from the supervisor", "300000"]
    assert (run_dir / "data" / "big.bin").read_bytes() == big
    assert os.stat(run_dir / "linked.txt").st_ino == source.stat().st_ino  # a hard link: same file system


async def test_inputs_that_cannot_be_placed_fail_the_job_naming_the_file(supervisor, start_agent, tmp_path):
    start_agent()
    outside = tmp_path / "outside"
    outside.mkdir()
    trap = tmp_path / "trap"
    trap.mkdir()
    os.symlink(outside, trap / "link")  # a link left in the run dir (a rerun) must not be followed
    await supervisor.send(
        run("up", tmp_path / "up", {"argv": ["true"]}, inputs=[InputFile("../escape.txt", data=b"x")]),
        run("abs", tmp_path / "abs", {"argv": ["true"]}, inputs=[InputFile("/etc/evil", data=b"x")]),
        run("trap", trap, {"argv": ["true"]}, inputs=[InputFile("link/x.txt", data=b"x")]),
        run("gone", tmp_path / "gone", {"argv": ["true"]}, inputs=[InputFile("a.txt", source=str(tmp_path / "nope"))]),
        run("lost", tmp_path / "lost", {"argv": ["true"]}, inputs=[InputFile("never.bin")]),
    )
    assert "'..'" in (await supervisor.status("up", "failed")).report.reason
    assert "absolute" in (await supervisor.status("abs", "failed")).report.reason
    assert "symbolic link" in (await supervisor.status("trap", "failed")).report.reason
    gone = (await supervisor.status("gone", "failed")).report.reason
    assert "'a.txt'" in gone and "No such file" in gone
    assert "'never.bin' did not arrive" in (await supervisor.status("lost", "failed")).report.reason
    assert not (tmp_path / "escape.txt").exists() and list(outside.iterdir()) == []


async def test_a_relative_program_that_is_not_among_the_inputs_fails_saying_how_to_send_it(supervisor, start_agent, tmp_path):
    start_agent()
    await supervisor.send(run("nosim", tmp_path / "nosim", {"argv": ["./sim.sh"]}))
    reason = (await supervisor.status("nosim", "failed")).report.reason
    assert reason.startswith("cannot start './sim.sh': No such file or directory in the job's run dir")
    assert "--input" in reason


async def test_the_jobs_env_wins_over_the_codes_and_jobvisors_own_win_over_both(supervisor, start_agent, tmp_path):
    start_agent()
    script = 'echo "$FOO $BAR $JOBVISOR_JOB_ID"'
    await supervisor.send(run("e1", tmp_path / "e1", {"script": script, "env": {"FOO": "code", "BAR": "code"}},
                              env={"FOO": "job", "JOBVISOR_JOB_ID": "spoofed"}))
    await supervisor.status("e1", "completed")
    assert bytes(supervisor.logs["e1"]) == b"job code e1\n"


async def test_a_job_with_a_workdir_runs_there_and_logs_in_its_run_dir(supervisor, start_agent, tmp_path):
    start_agent()
    place = tmp_path / "case"
    place.mkdir()
    (place / "input.txt").write_text("in place\n")
    await supervisor.send(run("w1", tmp_path / "w1", {"script": "cat input.txt; pwd; echo out > made.txt"}, workdir=str(place)))
    await supervisor.status("w1", "completed")
    assert bytes(supervisor.logs["w1"]).decode() == f"in place\n{place}\n"
    assert (place / "made.txt").exists() and (tmp_path / "w1" / "output.log").exists()


async def test_a_job_over_its_memory_limit_fails_out_of_memory(supervisor, tmp_path):
    """For real, on this machine: RLIMIT_AS where cgroup v2 has no memory controller (or is not
    ours), a cgroup v2 where it is; either way the reason says "out of memory"."""
    agent = AgentProcess(supervisor.url, tmp_path)
    agent.env["JOBVISOR_LOCAL_LIMITS"] = "auto"  # as the local driver passes its setting
    agent.start()
    try:
        await _hog_jobs(supervisor, tmp_path)
    finally:
        agent.kill()


async def _hog_jobs(supervisor, tmp_path):
    from jobvisor.job_limits import probe

    hog = [sys.executable, "-c", "b = bytearray(800 * 1024 * 1024); print('allocated', len(b))"]
    await supervisor.send(
        RunJob("hog", 1, "shell", {"argv": hog}, {"memory": 100 * 1024**2}, str(tmp_path / "hog")),
        RunJob("fits", 1, "shell", {"argv": [sys.executable, "-c", "b = bytearray(20 * 1024 * 1024); print('ok')"]},
               {"memory": 100 * 1024**2}, str(tmp_path / "fits")),
        RunJob("free", 1, "shell", {"argv": hog}, {}, str(tmp_path / "free")),
    )
    failed = (await supervisor.status("hog", "failed")).report
    assert failed.reason.startswith("out of memory"), failed.reason
    assert "100 MiB" in failed.reason
    assert ("RLIMIT_AS" in failed.reason) == (probe().kind == "rlimit")
    assert (await supervisor.status("fits", "completed")).report.exit_code == 0
    assert (await supervisor.status("free", "completed")).report.exit_code == 0  # no limit asked: none set
