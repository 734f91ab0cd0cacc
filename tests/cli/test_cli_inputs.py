"""`jobvisor submit` with inputs, env, python modules and memory units, against the real
gateway, supervisor and agents: each command runs from a folder of the user's own."""

from __future__ import annotations

import json

from jobvisor.job_limits import probe
from real_env import RealEnv


async def _job(real: RealEnv, job_id: str) -> dict:
    status, job, _ = await real.call("GET", f"/jobs/{job_id}")
    assert status == 200, job
    return job


async def _log(real: RealEnv, job_id: str) -> str:
    status, text, _ = await real.call("GET", f"/jobs/{job_id}/log")
    assert status == 200
    return text if isinstance(text, str) else text.decode()


async def test_a_relative_program_and_its_inputs_are_uploaded_and_env_is_set(real_cli, real, tmp_path):
    work = tmp_path / "case"
    (work / "data").mkdir(parents=True)
    (work / "sim.sh").write_text('#!/bin/sh\necho "FOO=$FOO BAR=$BAR"\ncat data/input.txt params/p.json\n')
    (work / "sim.sh").chmod(0o755)
    (work / "data" / "input.txt").write_text("line one\n")
    (work / "p.json").write_text('{"k": 1}\n')
    submitted = await real_cli.run("submit", "--input", "data/input.txt", "--input", "p.json:params/p.json",
                                   "--env", "FOO=bar", "--env", "BAR", "--", "./sim.sh", cwd=work, BAR="from-shell")
    assert submitted.rc == 0, submitted.err
    assert "uploading sim.sh as sim.sh" in submitted.err  # the program itself, found here
    job_id = submitted.out.strip()
    done = await real.wait_state(job_id, {"completed", "failed"})
    assert done["state"] == "completed", done["reason"]
    assert await _log(real, job_id) == 'FOO=bar BAR=from-shell\nline one\n{"k": 1}\n'
    assert done["env"] == {"FOO": "bar", "BAR": "from-shell"}
    assert {i["path"] for i in done["inputs"]} == {"data/input.txt", "params/p.json", "sim.sh"}


async def test_the_python_example_works_from_the_modules_own_folder(real_cli, real, tmp_path):
    work = tmp_path / "mysim"
    (work / "lib").mkdir(parents=True)
    (work / "mysim.py").write_text("import os, helper\n\ndef simulate(n):\n"
                                   "    return {'double': helper.double(n), 'mode': os.environ['MODE']}\n")
    (work / "lib" / "helper.py").write_text("def double(n):\n    return 2 * n\n")
    submitted = await real_cli.run("submit", "--code", "python", "--entry", "mysim:simulate", "--params", '{"n": 21}',
                                   "--input", "lib", "--path", "lib", "--env", "MODE=fast", cwd=work)
    assert submitted.rc == 0, submitted.err
    assert "uploading mysim.py as mysim.py" in submitted.err
    done = await real.wait_state(submitted.out.strip(), {"completed", "failed"})
    assert done["state"] == "completed", done["reason"]
    assert done["result"] == {"double": 42, "mode": "fast"}
    # its resubmit, from anywhere, has the uploaded module and folder again
    again = await real_cli.run("resubmit", done["id"], "--param", "args.n=5", cwd=tmp_path)
    assert again.rc == 0, again.err
    done = await real.wait_state(again.out.strip(), {"completed", "failed"})
    assert done["state"] == "completed", done["reason"]
    assert done["result"] == {"double": 10, "mode": "fast"}


async def test_files_the_command_names_and_the_modules_they_import_are_uploaded(real_cli, real, tmp_path):
    work = tmp_path / "train"
    work.mkdir()
    (work / "train.py").write_text("import sys\nfrom helpers import total\nprint(total(open(sys.argv[1])))\n")
    (work / "helpers.py").write_text("import numbers_here\n\ndef total(f):\n    return numbers_here.add(f)\n")
    (work / "numbers_here.py").write_text("def add(f):\n    return sum(int(x) for x in f)\n")
    (work / "nums.txt").write_text("1\n2\n3\n")
    (work / "unused.py").write_text("raise SystemExit('not imported, not sent')\n")
    submitted = await real_cli.run("submit", "--", "python3", "train.py", "nums.txt", "--flag", cwd=work)
    assert submitted.rc == 0, submitted.err
    for name in ("train.py", "nums.txt", "helpers.py", "numbers_here.py"):  # the last imported by helpers.py
        assert f"uploading {name} as {name}" in submitted.err
    assert "unused.py" not in submitted.err
    done = await real.wait_state(submitted.out.strip(), {"completed", "failed"})
    assert done["state"] == "completed", done["reason"]
    assert await _log(real, done["id"]) == "6\n"
    # a python entry found nowhere: said at submit, not only when the job fails
    typo = await real_cli.run("submit", "--code", "python", "--entry", "mysimm:simulate", cwd=work)
    assert typo.rc == 0 and "warning: no mysimm.py or package mysimm/ here" in typo.err
    stdlib = await real_cli.run("submit", "--code", "python", "--entry", "statistics:fmean",
                                "--params", '{"data": [1, 2]}', cwd=work)
    assert stdlib.rc == 0 and "warning" not in stdlib.err


async def test_a_bare_memory_number_is_megabytes_as_in_slurm(real_cli, real):
    submitted = await real_cli.run("submit", "--mem", "512", "--", "true")
    assert submitted.rc == 0, submitted.err
    job = await _job(real, submitted.out.strip())
    assert job["resources"]["memory"] == 512 * 1024 * 1024
    helped = await real_cli.run("submit", "--help")
    assert "a bare number is megabytes" in helped.out
    status = await real_cli.run("status")  # says how this machine enforces it
    mode = probe()
    assert status.rc == 0 and f"local    memory: {mode.view()['memory']}; cpus: {mode.view()['cpus']} ({mode.why})" in status.out


async def test_early_refusals_name_the_field(real_cli, tmp_path):
    misspelled = await real_cli.run("submit", "--code", "dmeo", "--params", "{}")
    assert misspelled.rc != 0 and "did you mean 'demo'?" in misspelled.err
    in_place = await real_cli.run("submit", "--workdir", str(tmp_path), "--", "true")
    assert in_place.rc != 0 and "workdir" in in_place.err and "off on this server" in in_place.err
    escape = await real_cli.run("submit", "--input", f"{tmp_path}:../x", "--", "true")
    assert escape.rc != 0 and "'..'" in escape.err
    (tmp_path / "f.txt").write_text("x")
    missing = await real_cli.run("submit", "--input", str(tmp_path / "nope.txt"), "--", "true")
    assert missing.rc != 0 and "no such file" in missing.err
