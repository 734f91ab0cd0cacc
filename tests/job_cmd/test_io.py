import os

import pytest

from jobvisor.errors import InvalidRequest, NotFound, PathEscape

from job_cmd import io


@pytest.fixture
def run_dir(tmp_path):
    root = tmp_path / "run"
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_bytes(b"hello world")
    (root / "sub" / "b.txt").write_bytes(b"b")
    (root / ".jobvisor").mkdir()
    (root / ".jobvisor" / "status.json").write_text("{}")
    (root / ".jobvisor-progress.json").write_text('{"fraction": 0.5}')  # not listed either
    (root / "sub" / ".jobvisor-progress.json").write_text("{}")  # only at the top: listed
    (tmp_path / "secret").write_text("top secret")
    (tmp_path / "outside_dir").mkdir()
    (tmp_path / "outside_dir" / "x").write_text("x")
    return root


def test_list_files(run_dir, tmp_path):
    (run_dir / "inside_link").symlink_to(run_dir / "a.txt")
    (run_dir / "outside_link").symlink_to(tmp_path / "secret")
    (run_dir / "dir_link").symlink_to(tmp_path / "outside_dir")
    (run_dir / "dangling").symlink_to(run_dir / "nope")
    files = io.list_files(run_dir)
    assert [f["path"] for f in files] == ["a.txt", "inside_link", "sub/.jobvisor-progress.json", "sub/b.txt"]
    assert files[0]["size"] == 11 and files[0]["mtime"] > 0
    assert len(io.list_files(run_dir, limit=2)) == 2


def test_read_file_slices(run_dir):
    assert io.read_file(run_dir, "a.txt") == {"data": b"hello world", "offset": 0, "size": 11}
    assert io.read_file(run_dir, "a.txt", 6, 3) == {"data": b"wor", "offset": 6, "size": 11}
    assert io.read_file(run_dir, "a.txt", 50)["data"] == b""
    assert io.read_file(run_dir, "./sub//b.txt")["data"] == b"b"


@pytest.mark.parametrize("path", ["../secret", "sub/../../secret", "..", "sub/../a.txt"])
def test_dotdot_is_refused(run_dir, path):
    with pytest.raises(PathEscape, match=r"contains '\.\.'"):
        io.read_file(run_dir, path)


def test_absolute_is_refused(run_dir, tmp_path):
    with pytest.raises(PathEscape, match="is absolute"):
        io.read_file(run_dir, str(tmp_path / "secret"))


def test_symlink_out_is_refused(run_dir, tmp_path):
    (run_dir / "evil").symlink_to(tmp_path / "secret")
    (run_dir / "evil_dir").symlink_to(tmp_path / "outside_dir")
    with pytest.raises(PathEscape, match="leads outside the run dir"):
        io.read_file(run_dir, "evil")
    with pytest.raises(PathEscape, match="leads outside the run dir"):
        io.read_file(run_dir, "evil_dir/x")


def test_symlink_inside_is_followed(run_dir):
    (run_dir / "alias").symlink_to("a.txt")
    assert io.read_file(run_dir, "alias")["data"] == b"hello world"


def test_o_nofollow_guards_a_swapped_final_component(run_dir, tmp_path, monkeypatch):
    # the realpath check sees a regular file; between check and open it becomes a symlink out
    real_realpath = os.path.realpath

    def racing_realpath(path, *args, **kwargs):
        result = real_realpath(path, *args, **kwargs)
        if str(path).endswith("a.txt"):
            os.unlink(run_dir / "a.txt")
            os.symlink(tmp_path / "secret", run_dir / "a.txt")
        return result

    monkeypatch.setattr(io.os.path, "realpath", racing_realpath)
    with pytest.raises(PathEscape):
        io.read_file(run_dir, "a.txt")


def test_missing_and_not_files(run_dir, tmp_path):
    with pytest.raises(NotFound, match="no file 'nope.txt'"):
        io.read_file(run_dir, "nope.txt")
    with pytest.raises(NotFound):
        io.read_file(run_dir, "a.txt/child")
    with pytest.raises(InvalidRequest, match="is a directory"):
        io.read_file(run_dir, "sub")
    with pytest.raises(InvalidRequest):
        io.read_file(run_dir, "")
    with pytest.raises(InvalidRequest):
        io.read_file(run_dir, "a.txt", offset=-1)
    with pytest.raises(NotFound, match="run dir does not exist"):
        io.list_files(tmp_path / "missing")
    os.mkfifo(run_dir / "fifo")
    with pytest.raises(InvalidRequest, match="not a regular file"):
        io.read_file(run_dir, "fifo")
