"""Pure parts of the sbatch driver and its agent: the Slurm state mapping (with the states a
single-node test cluster cannot produce), the batch script, the login-node scripts, parsing."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from jobvisor.resources import Resources
from jobvisor.states import JobState

from agent.slurm import commands, script
from agent.slurm.backend import end_reason
from agent.jobs import JobRecord
from agent.slurm.record import SlurmJob, Submit, scan
from agent.slurm.states import Phase, map_state, parse_exit_code, returncode_of
from drivers.sbatch import remote
from drivers.sbatch.ssh import answer_prompts


@pytest.mark.parametrize("slurm, phase, state", [
    ("PENDING", Phase.PENDING, JobState.STARTING),
    ("CONFIGURING", Phase.PENDING, JobState.STARTING),
    ("REQUEUED", Phase.PENDING, JobState.STARTING),
    ("RUNNING", Phase.RUNNING, JobState.RUNNING),
    ("COMPLETING", Phase.RUNNING, JobState.RUNNING),
    ("SUSPENDED", Phase.RUNNING, JobState.RUNNING),
    ("COMPLETED", Phase.ENDED, JobState.COMPLETED),
    ("FAILED", Phase.ENDED, JobState.FAILED),
    ("CANCELLED", Phase.ENDED, JobState.CANCELED),
    ("CANCELLED by 1001", Phase.ENDED, JobState.CANCELED),
    ("TIMEOUT", Phase.ENDED, JobState.TIMED_OUT),
    ("DEADLINE", Phase.ENDED, JobState.TIMED_OUT),
    ("OUT_OF_MEMORY", Phase.ENDED, JobState.FAILED),
    ("NODE_FAIL", Phase.ENDED, JobState.LOST),
    ("BOOT_FAIL", Phase.ENDED, JobState.LOST),
    ("PREEMPTED", Phase.ENDED, JobState.LOST),
    ("completed+", Phase.ENDED, JobState.COMPLETED),
])
def test_every_slurm_state_maps_to_a_job_state(slurm, phase, state):
    mapped = map_state(slurm)
    assert mapped is not None and (mapped.phase, mapped.state) == (phase, state)


def test_unknown_state_is_none():
    assert map_state("SOMETHING_NEW") is None


def test_end_reasons_carry_slurm_state_and_reason_verbatim():
    assert end_reason(JobState.TIMED_OUT, "TIMEOUT", "TimeLimit", "7", None, "walltime exceeded", 60) == \
        "walltime 00:01:00 exceeded (Slurm job 7: TIMEOUT, reason TimeLimit)"
    assert end_reason(JobState.LOST, "NODE_FAIL", "NodeDown", "8", None, map_state("NODE_FAIL").reason, None) == \
        "a node of the job failed (Slurm job 8: NODE_FAIL, reason NodeDown)"
    assert end_reason(JobState.FAILED, "FAILED", "NonZeroExitCode", "9", 3, "failed", None) == \
        "exit code 3 (Slurm job 9: FAILED, reason NonZeroExitCode)"
    assert "OUT_OF_MEMORY" in end_reason(JobState.FAILED, "OUT_OF_MEMORY", "None", "10", None, "out of memory", None)
    assert end_reason(JobState.COMPLETED, "COMPLETED", "None", "11", 0, "", None) == ""


def test_exit_codes():
    assert parse_exit_code("0:0") == (0, 0)
    assert parse_exit_code("3:0") == (3, 0)
    assert returncode_of(*parse_exit_code("0:15")) == -15
    assert parse_exit_code("") == (None, None)


def test_resources_become_sbatch_lines(tmp_path):
    resources = Resources.parse({
        "cpus": 4, "memory": "2G", "walltime": "01:30:00", "gpus": 1, "nodes": 2, "partition": "debug",
        "qos": "normal", "account": "m1234", "constraint": "cpu", "ntasks": 8, "sbatch_args": ["--exclusive"],
    })
    text = script.render(job_id="j1", attempt=2, run_dir=tmp_path, argv=["./sim", "it's"], env={"A": "x y"},
                         resources=resources, site=script.SiteDefaults(qos="low", extra_args=("--licenses=scratch",)))
    lines = [line for line in text.splitlines() if line.startswith("#SBATCH")]
    for expected in ["--job-name=jv-j1-2", "--nodes=2", "--cpus-per-task=4", "--time=01:30:00", "--mem=2048M",
                     "--gpus=1", "--partition=debug", "--qos=normal", "--account=m1234", "--constraint=cpu",
                     "--ntasks=8", "--licenses=scratch", "--exclusive", f"--output={tmp_path}/output.log"]:
        assert f"#SBATCH {expected}" in lines, expected
    assert "export A='x y'" in text
    assert "./sim 'it'\"'\"'s'" in text
    subprocess.run(["bash", "-n"], input=text, text=True, check=True)


def test_site_defaults_fill_in_and_time_rounds_up_to_minutes(tmp_path):
    options = script.sbatch_options(Resources.parse({"walltime": 30}), script.SiteDefaults(partition="p", account="a"))
    assert "--time=00:01:00" in options and "--partition=p" in options and "--account=a" in options
    assert script.format_time(2 * 86400 + 61) == "2-00:02:00"


@pytest.mark.parametrize("resources, message", [
    ({"partition": "a\nb"}, "single line"),
    ({"sbatch_args": ["x"]}, "not an sbatch option"),
    ({"colour": "red"}, "unknown resource"),
    ({"ntasks": 0}, "ntasks"),
])
def test_bad_resources_are_refused(resources, message):
    with pytest.raises(script.ScriptError, match=message):
        script.sbatch_options(Resources.parse(resources), script.SiteDefaults())


def test_parsers():
    assert commands.slurm_message("sbatch: error: invalid partition specified: nope\n"
                                  "sbatch: error: Batch job submission failed: Invalid partition name specified\n") == \
        "invalid partition specified: nope; Batch job submission failed: Invalid partition name specified"
    entries = commands.parse_squeue("12|PENDING|Priority|\n13|RUNNING|None|node1\n")
    assert entries["12"].reason == "Priority" and entries["13"].nodes == "node1"
    info = commands.parse_scontrol("JobId=5 JobName=x JobState=TIMEOUT Reason=TimeLimit Dependency=(null) ExitCode=0:15")
    assert (info.state, info.exit_code, info.reason) == ("TIMEOUT", "0:15", "TimeLimit")
    assert commands.parse_sacct("5|FAILED|2:0|None\n", "5").exit_code == "2:0"


def test_slurm_file_round_trip_and_scan(tmp_path):
    run_dir = tmp_path / "runs" / "u" / "j1"
    (run_dir / ".jobvisor").mkdir(parents=True)
    job = SlurmJob(JobRecord(job_id="j1", attempt=1, code="shell", run_dir=run_dir))
    job.submit, job.slurm_job_id, job.slurm_state = Submit.SUBMITTED, "42", "RUNNING"
    job.save()
    gone = SlurmJob(JobRecord(job_id="j2", attempt=1, code="shell", run_dir=tmp_path / "runs" / "u" / "j2"))
    (gone.job.run_dir / ".jobvisor").mkdir(parents=True)
    gone.forgotten = True
    gone.save()
    (tmp_path / "runs" / "u" / "junk").mkdir()
    found = scan(tmp_path / "runs" / "u")
    assert [(j.job.job_id, j.slurm_job_id, j.submit) for j in found] == [("j1", "42", Submit.SUBMITTED)]
    assert found[0].info()["slurm_job_id"] == "42"


def gone_soon(pid: int, timeout: float = 5.0) -> bool:
    """True once `pid` has exited (gone or a zombie): a SIGKILL takes effect soon, not at once."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if Path(f"/proc/{pid}/stat").read_bytes().split(b" ")[2] == b"Z":
                return True
        except (OSError, IndexError):
            return True
        time.sleep(0.05)
    return False


def test_start_script_keeps_the_token_off_command_lines(tmp_path):
    text = remote.start_script(work_dir=str(tmp_path / "w"), cluster="c1", user="alice", command="sleep 30",
                               env={"JOBVISOR_AGENT_ID": "a1"}, token="jva_secret")
    assert "JOBVISOR_AGENT_TOKEN='jva_secret'" in text or "JOBVISOR_AGENT_TOKEN=jva_secret" in text
    nohup = [line for line in text.splitlines() if line.startswith("nohup")]
    assert nohup and "jva_secret" not in nohup[0]
    out = subprocess.run(["/bin/sh", "-s"], input=text, capture_output=True, text=True, timeout=20)
    pid = remote.parse_pid(out.stdout)
    assert out.returncode == 0 and pid, out.stderr
    try:
        # The process execs nohup, setsid, sh and sleep in turn; between two execs its environ
        # and cmdline read empty. Every one of them has the token in its environment only.
        deadline = time.monotonic() + 10
        while True:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            if (environ and cmdline) or time.monotonic() > deadline:
                break
            time.sleep(0.01)
        assert b"JOBVISOR_AGENT_TOKEN=jva_secret" in environ.split(b"\0") and b"jva_secret" not in cmdline
        assert (tmp_path / "w" / "agents" / "c1" / "alice.pid").read_text().strip() == str(pid)
        stop = subprocess.run(["/bin/sh", "-s"], input=remote.stop_script(pid=pid, agent_id="a1", timeout=2),
                              capture_output=True, text=True, timeout=20)
        assert stop.returncode == 0
        assert gone_soon(pid), "the agent survived its stop script"
    finally:
        subprocess.run(["kill", "-9", str(pid)], capture_output=True)


def test_names_that_cannot_be_file_names_are_refused():
    with pytest.raises(ValueError):
        remote.check_name("../x")
    with pytest.raises(ValueError):
        remote.run_dir("..", "alice", "j1")
    with pytest.raises(ValueError):
        remote.resolve_work_dir('$HOME/"x"')


def test_keyboard_interactive_answers():
    assert answer_prompts([("Password: ", False)], "pw", None) == ["pw"]
    assert answer_prompts([("Password: ", False), ("One-time code: ", True)], "pw", "123456") == ["pw", "123456"]
    assert answer_prompts([("Enter your OTP: ", False)], "pw", None) is None


def test_submit_is_refused_when_the_driver_is_not_configured_or_resources_are_wrong():
    from jobvisor.config import Config, SbatchConfig
    from jobvisor.errors import InvalidRequest

    from drivers.sbatch import SbatchDriver

    with pytest.raises(InvalidRequest, match="not configured"):
        SbatchDriver(Config(), host=None).validate(Resources())
    with pytest.raises(InvalidRequest, match="not configured"):
        SbatchDriver.instance_for(Config(), Resources())
    config = Config(sbatch=SbatchConfig(login_host="login", cluster="c1"))
    assert SbatchDriver.instance_for(config, Resources()) == "c1"
    with pytest.raises(InvalidRequest, match="no cluster 'c2': this jobvisor knows 'c1'") as info:
        SbatchDriver.instance_for(config, Resources.parse({"cluster": "c2"}))
    assert info.value.field == "resources.cluster"
    driver = SbatchDriver(config, host=None, instance="c1")
    driver.validate(Resources.parse({"cpus": 64, "partition": "debug", "cluster": "c1", "sbatch_args": ["--exclusive"]}))
    for bad, field in [({"colour": "red"}, "resources.colour"),
                       ({"qos": "a\nb"}, "resources.qos"), ({"sbatch_args": ["x"]}, "resources.sbatch_args")]:
        with pytest.raises(InvalidRequest) as info:
            driver.validate(Resources.parse(bad))
        assert info.value.field == field
    assert driver.login_required("alice").startswith("login required: log in to cluster 'c1'")
    assert driver.run_dir("alice", "j1") == "runs/c1/alice/j1"
    assert driver.target == "sbatch:c1"


def test_several_clusters_each_with_its_own_settings(tmp_path):
    from jobvisor.config import load_config
    from jobvisor.errors import ConfigError, InvalidRequest

    from drivers.sbatch import SbatchDriver

    path = tmp_path / "c.toml"
    path.write_text(
        '[sbatch]\ncluster = "alpha"\nlogin_host = "alpha-login"\npoll_interval = 2.0\naccount = "m1"\n'
        '[sbatch.clusters.beta]\nlogin_host = "beta-login"\naccount = "m2"\n'
        '[sbatch.clusters.gamma-2]\nlogin_host = "gamma-login"\n'
    )
    config = load_config(path, environ={"JOBVISOR_SBATCH_CLUSTERS_GAMMA_2_LOGIN_PORT": "2200"})
    assert list(config.clusters) == ["alpha", "beta", "gamma-2"] and config.default_cluster == "alpha"
    beta, gamma = config.clusters["beta"], config.clusters["gamma-2"]
    assert (beta.login_host, beta.account, beta.poll_interval) == ("beta-login", "m2", 2.0)  # poll_interval from [sbatch]
    assert (gamma.login_port, gamma.account) == (2200, "m1")
    assert SbatchDriver.instance_for(config, Resources.parse({"cluster": "beta"})) == "beta"
    assert SbatchDriver.instance_for(config, Resources()) == "alpha"
    drivers = {name: SbatchDriver(config, host=None, instance=name) for name in config.clusters}
    assert {d.run_dir("u", "j") for d in drivers.values()} == {"runs/alpha/u/j", "runs/beta/u/j", "runs/gamma-2/u/j"}
    assert "'beta'" in drivers["beta"].login_required("u")
    from jobvisor.config import describe

    assert describe(config)["sbatch"]["clusters"]["gamma-2"]["login_port"] == 2200

    # without [sbatch] login_host and with two clusters, a job must name its cluster
    path.write_text('[sbatch.clusters.a]\nlogin_host = "a"\n[sbatch.clusters.b]\nlogin_host = "b"\n')
    two = load_config(path, environ={})
    assert list(two.clusters) == ["a", "b"] and two.default_cluster == ""
    with pytest.raises(InvalidRequest, match="name the cluster: this jobvisor knows 'a', 'b'"):
        SbatchDriver.instance_for(two, Resources())

    for text, error in [
        ('[sbatch.clusters.b]\naccount = "x"\n', "login_host is required"),
        ('[sbatch.clusters."a b"]\nlogin_host = "x"\n', "a cluster name is"),
        ('[sbatch.clusters.b]\nlogin_host = "x"\ncluster = "c"\n', "drop its 'cluster' key"),
        ('[sbatch.clusters.b]\nlogin_host = "x"\npartion = "debug"\n', "unknown key 'partion' in \\[sbatch.clusters.b\\]"),
        ('[sbatch]\ncluster = "b"\nlogin_host = "y"\n[sbatch.clusters.b]\nlogin_host = "x"\n', "already describes cluster 'b'"),
    ]:
        path.write_text(text)
        with pytest.raises(ConfigError, match=error):
            load_config(path, environ={})


def test_a_second_start_kills_the_stale_agent_of_the_same_user_and_cluster_only(tmp_path):
    def start(agent_id: str, cluster: str = "c1") -> int:
        text = remote.start_script(work_dir=str(tmp_path / "w"), cluster=cluster, user="bob", command="sleep 60",
                                   env={"JOBVISOR_AGENT_ID": agent_id, "JOBVISOR_AGENT_KIND": "sbatch"}, token="t")
        out = subprocess.run(["/bin/sh", "-s"], input=text, capture_output=True, text=True, timeout=20)
        assert out.returncode == 0, out.stderr
        return remote.parse_pid(out.stdout)

    def running(pid: int) -> bool:
        stat = Path(f"/proc/{pid}/stat")
        return stat.exists() and stat.read_text().split()[2] != "Z"

    first = start("a1")
    other_cluster = start("b1", cluster="c2")  # same user, same work dir, another cluster
    second = start("a2")
    try:
        assert len({first, second, other_cluster}) == 3
        assert gone_soon(first), "the stale agent still runs"
        assert running(second)
        assert running(other_cluster), "a start on cluster c1 killed the agent of cluster c2"
    finally:
        subprocess.run(["kill", "-9", str(first), str(second), str(other_cluster)], capture_output=True)
