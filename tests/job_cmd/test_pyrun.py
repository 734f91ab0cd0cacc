import json
import subprocess
import sys

import pytest

from jobvisor.resources import Resources

from job_cmd.codes import get_code


def run_python(tmp_path, params, module_source=None, module="jobmod"):
    if module_source is not None:
        (tmp_path / f"{module}.py").write_text(module_source)
    launch = get_code("python").launch(params, tmp_path, Resources())
    proc = subprocess.run(launch.argv, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    return proc


def test_result_is_written(tmp_path):
    proc = run_python(tmp_path, {"entry": "jobmod:add", "args": {"a": 2, "b": 3}}, "def add(a, b):\n    print('adding')\n    return {'sum': a + b}\n")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "adding\n"
    assert json.loads((tmp_path / ".jobvisor" / "result.json").read_text()) == {"sum": 5}
    assert get_code("python").result(tmp_path) == {"sum": 5}


def test_extra_path_and_nested_function(tmp_path):
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "deep.py").write_text("class Tools:\n    @staticmethod\n    def go():\n        return [1, 2]\n")
    proc = run_python(tmp_path, {"entry": "deep:Tools.go", "path": ["lib"]})
    assert proc.returncode == 0, proc.stderr
    assert get_code("python").result(tmp_path) == [1, 2]


def test_exception_exits_1_with_traceback(tmp_path):
    proc = run_python(tmp_path, {"entry": "jobmod:boom"}, "def boom():\n    raise ValueError('bad input')\n")
    assert proc.returncode == 1
    assert "Traceback" in proc.stderr and "ValueError: bad input" in proc.stderr
    assert not (tmp_path / ".jobvisor" / "result.json").exists()


@pytest.mark.parametrize(
    "entry, source, message",
    [
        ("missing_mod:f", None, "cannot import entry 'missing_mod:f': no module named 'missing_mod'"),
        ("jobmod:nothere", "x = 1\n", "module 'jobmod' has no attribute 'nothere'"),
        ("jobmod:x", "x = 1\n", "entry 'jobmod:x' is not callable"),
        ("jobmod:f", "import not_installed_dep\ndef f(): pass\n", "cannot import entry 'jobmod:f'"),
        ("jobmod:f", "def f(:\n", "SyntaxError"),
    ],
)
def test_import_problems_exit_2(tmp_path, entry, source, message):
    proc = run_python(tmp_path, {"entry": entry}, source)
    assert proc.returncode == 2
    assert message in proc.stderr


def test_non_json_result_exits_1(tmp_path):
    proc = run_python(tmp_path, {"entry": "jobmod:f"}, "def f():\n    return object()\n")
    assert proc.returncode == 1 and "not JSON-serialisable" in proc.stderr


def test_wrong_args_is_a_job_failure(tmp_path):
    proc = run_python(tmp_path, {"entry": "jobmod:f", "args": {"zzz": 1}}, "def f(a):\n    return a\n")
    assert proc.returncode == 1 and "unexpected keyword argument 'zzz'" in proc.stderr


def test_run_in_process(tmp_path, monkeypatch):
    from job_cmd import pyrun

    (tmp_path / "inproc_mod.py").write_text("def f(x):\n    return x * 2\n")
    get_code("python").launch({"entry": "inproc_mod:f", "args": {"x": 21}}, tmp_path, Resources())
    monkeypatch.setattr(sys, "path", list(sys.path))
    assert pyrun.run(tmp_path) == 0
    assert get_code("python").result(tmp_path) == 42
