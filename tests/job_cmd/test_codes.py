import json
import sys

import pytest

from jobvisor.errors import JobvisorError
from jobvisor.resources import Resources

from job_cmd.codes import Launch, get_code, installed_codes
from job_cmd.codes.demo import DemoCode
from job_cmd.codes.python import PythonCode
from job_cmd.codes.shell import ShellCode
from job_cmd.errors import InvalidParams, UnknownCode


def launch(code, params, tmp_path):
    return get_code(code).launch(params, tmp_path, Resources())


def test_registry_finds_builtin_codes_and_caches():
    assert installed_codes() == ["demo", "python", "shell"]
    assert isinstance(get_code("shell"), ShellCode) and isinstance(get_code("python"), PythonCode)
    assert get_code("demo") is get_code("demo")


def test_unknown_code_lists_installed():
    with pytest.raises(UnknownCode) as info:
        get_code("fortran")
    assert str(info.value) == "unknown code 'fortran'; installed codes: demo, python, shell"
    assert isinstance(info.value, JobvisorError) and info.value.field == "code"


def test_shell_argv_and_script(tmp_path):
    assert launch("shell", {"argv": ["echo", "hi"], "env": {"A": "1"}}, tmp_path) == Launch(["echo", "hi"], {"A": "1"})
    assert launch("shell", {"script": "echo $A"}, tmp_path).argv == ["/bin/sh", "-c", "echo $A"]
    assert launch("shell", {"script": "echo", "shell": "/bin/bash"}, tmp_path).argv == ["/bin/bash", "-c", "echo"]


@pytest.mark.parametrize(
    "params, field, words",
    [
        ({}, "params.argv", "exactly one of"),
        ({"argv": ["a"], "script": "b"}, "params.argv", "exactly one of"),
        ({"argv": []}, "params.argv", "must not be empty"),
        ({"argv": ["ls", 3]}, "params.argv", "list of strings"),
        ({"argv": "ls"}, "params.argv", "list of strings"),
        ({"script": ""}, "params.script", "non-empty string"),
        ({"script": "x", "shell": ""}, "params.shell", "non-empty string"),
        ({"argv": ["x"], "shell": "/bin/bash"}, "params.shell", "only applies"),
        ({"argv": ["x"], "env": {"A": 1}}, "params.env.A", "must be a string"),
        ({"argv": ["x"], "env": {"A=B": "1"}}, "params.env", "invalid variable name"),
        ({"argv": ["x"], "argz": 1}, "params.argz", "unknown param"),
        ([1, 2], "params", "must be an object"),
    ],
)
def test_shell_rejects_bad_params(params, field, words, tmp_path):
    with pytest.raises(InvalidParams) as info:
        launch("shell", params, tmp_path)
    assert info.value.field == field and words in str(info.value)


def test_python_launch_writes_params(tmp_path):
    result = launch("python", {"entry": "pkg.mod:run", "args": {"n": 3}, "path": ["lib"]}, tmp_path)
    assert result.argv == [sys.executable, "-m", "job_cmd.pyrun"]
    written = json.loads((tmp_path / ".jobvisor" / "params.json").read_text())
    assert written == {"entry": "pkg.mod:run", "args": {"n": 3}, "path": ["lib"]}


@pytest.mark.parametrize(
    "params, field",
    [
        ({}, "params.entry"),
        ({"entry": "no_colon"}, "params.entry"),
        ({"entry": "a b:c"}, "params.entry"),
        ({"entry": "m:f", "args": [1]}, "params.args"),
        ({"entry": "m:f", "args": {"not valid": 1}}, "params.args"),
        ({"entry": "m:f", "args": {"x": float("nan")}}, "params.args"),
        ({"entry": "m:f", "path": "lib"}, "params.path"),
    ],
)
def test_python_rejects_bad_params(params, field, tmp_path):
    with pytest.raises(InvalidParams) as info:
        launch("python", params, tmp_path)
    assert info.value.field == field


def test_demo_launch_and_validation(tmp_path):
    argv = launch("demo", {"steps": 10, "dt": 0.5}, tmp_path).argv
    assert argv[:3] == [sys.executable, "-m", "job_cmd.codes.demo"]
    assert "--steps=10" in argv and "--dt=0.5" in argv
    assert launch("demo", None, tmp_path).argv[3] == "--steps=2000"
    for params, field in [({"steps": 0}, "params.steps"), ({"steps": 1.5}, "params.steps"), ({"dt": "x"}, "params.dt"), ({"speed": 1}, "params.speed")]:
        with pytest.raises(InvalidParams) as info:
            DemoCode().launch(params, tmp_path, Resources())
        assert info.value.field == field


def test_default_result_and_analyze(tmp_path):
    code = get_code("shell")
    assert code.result(tmp_path) is None
    (tmp_path / ".jobvisor").mkdir()
    (tmp_path / ".jobvisor" / "result.json").write_text('{"a": 1}')
    assert code.result(tmp_path) == {"a": 1}
    (tmp_path / "output.log").write_text("one\ntwo\nthree\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "f.bin").write_bytes(b"12345")
    summary = code.analyze(tmp_path, {})
    assert summary == {
        "files": [{"path": "output.log", "size": 14}, {"path": "sub/f.bin", "size": 5}],
        "total_bytes": 19,
        "log_lines": 3,
    }
    (tmp_path / ".jobvisor" / "result.json").write_text("{not json")
    with pytest.raises(ValueError):
        code.result(tmp_path)
