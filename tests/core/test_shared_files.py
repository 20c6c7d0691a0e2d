"""core.store.atomic_write_bytes(shared=True): equal files of an ensemble are hard links."""

import os

import pytest

from core.durability import group_commit
from core.errors import RunStoreError
from core.store import atomic_write_bytes

SOURCE = b"config = {'seed': 0}\n"


def _inode(path):
    return os.stat(path).st_ino


def test_equal_bytes_in_a_group_are_one_file(tmp_path):
    for name in ("a", "b", "c"):
        (tmp_path / name).mkdir()
    atomic_write_bytes(tmp_path / "a" / "config.py", SOURCE, shared=True)
    with group_commit():
        atomic_write_bytes(tmp_path / "b" / "config.py", SOURCE, shared=True)
        atomic_write_bytes(tmp_path / "c" / "config.py", SOURCE + b"# other\n", shared=True)
    assert _inode(tmp_path / "b" / "config.py") == _inode(tmp_path / "a" / "config.py")
    assert _inode(tmp_path / "c" / "config.py") != _inode(tmp_path / "a" / "config.py")
    assert (tmp_path / "b" / "config.py").read_bytes() == SOURCE
    assert not [p for p in tmp_path.rglob(".*.tmp")]  # no temp file left behind


def test_outside_a_group_or_unshared_each_file_is_written(tmp_path):
    atomic_write_bytes(tmp_path / "a.py", SOURCE, shared=True)
    atomic_write_bytes(tmp_path / "b.py", SOURCE, shared=True)  # no group: fsynced alone
    with group_commit():
        atomic_write_bytes(tmp_path / "c.py", SOURCE)
    inodes = {_inode(tmp_path / n) for n in ("a.py", "b.py", "c.py")}
    assert len(inodes) == 3


def test_a_source_replaced_or_removed_since_is_not_linked(tmp_path):
    atomic_write_bytes(tmp_path / "a.py", SOURCE, shared=True)
    atomic_write_bytes(tmp_path / "a.py", b"changed\n")  # replaced: a new inode
    with group_commit():
        atomic_write_bytes(tmp_path / "b.py", SOURCE, shared=True)
    assert (tmp_path / "b.py").read_bytes() == SOURCE
    assert _inode(tmp_path / "b.py") != _inode(tmp_path / "a.py")
    os.unlink(tmp_path / "b.py")  # the file last written with SOURCE is gone
    with group_commit():
        atomic_write_bytes(tmp_path / "c.py", SOURCE, shared=True)
    assert (tmp_path / "c.py").read_bytes() == SOURCE


def test_a_link_that_fails_falls_back_to_writing(tmp_path, monkeypatch):
    atomic_write_bytes(tmp_path / "a.py", SOURCE, shared=True)

    def refuse(*args, **kwargs):
        raise OSError(1, "links not supported here")

    monkeypatch.setattr(os, "link", refuse)
    with group_commit():
        atomic_write_bytes(tmp_path / "b.py", SOURCE, shared=True)
    assert (tmp_path / "b.py").read_bytes() == SOURCE
    assert _inode(tmp_path / "b.py") != _inode(tmp_path / "a.py")


def test_a_symbolic_link_target_is_still_refused(tmp_path):
    atomic_write_bytes(tmp_path / "a.py", SOURCE, shared=True)
    (tmp_path / "elsewhere.py").write_bytes(b"")
    os.symlink(tmp_path / "elsewhere.py", tmp_path / "b.py")
    with group_commit(), pytest.raises(RunStoreError, match="symbolic link"):
        atomic_write_bytes(tmp_path / "b.py", SOURCE, shared=True)
    assert (tmp_path / "elsewhere.py").read_bytes() == b""


def test_equal_trace_manifests_of_a_group_are_one_file_until_one_changes(tmp_path):
    """An ensemble's members that flush at the same steps write one manifest file; a
    resume that cuts one member's trace replaces its manifest alone."""
    from core.store import TraceWriter, read_stream

    folders = [tmp_path / name for name in ("a", "b", "c")]
    with group_commit():
        for i, folder in enumerate(folders):
            trace = TraceWriter(folder)
            trace.append("scalars", {"step": i, "loss": 1.0 / (i + 1)})
            if i == 2:
                trace.append("records", {"step": 0, "x": 1.0})
            trace.flush()
    a, b, c = (folder / "chunks.json" for folder in folders)
    assert _inode(a) == _inode(b) != _inode(c)
    assert [read_stream(f, "scalars")["step"].tolist() for f in folders] == [[0], [1], [2]]
    TraceWriter(folders[1], 1).drop_chunks_from(0)
    assert _inode(a) != _inode(b)
    assert read_stream(folders[0], "scalars")["step"].tolist() == [0]
    assert read_stream(folders[1], "scalars") == {}


def test_a_link_to_a_new_name_is_made_there_and_an_existing_file_is_replaced(tmp_path, monkeypatch):
    """A new name gets the link itself (it appears whole); an existing file is replaced
    through a temp link renamed over it."""
    atomic_write_bytes(tmp_path / "a.py", SOURCE, shared=True)
    (tmp_path / "c.py").write_bytes(b"old\n")
    renames = []
    real = os.rename
    monkeypatch.setattr(os, "rename", lambda *a, **k: renames.append(a[1]) or real(*a, **k))
    with group_commit():
        atomic_write_bytes(tmp_path / "b.py", SOURCE, shared=True)
        assert renames == []
        atomic_write_bytes(tmp_path / "c.py", SOURCE, shared=True)
        assert renames == ["c.py"]
    for name in ("b.py", "c.py"):
        assert _inode(tmp_path / name) == _inode(tmp_path / "a.py")
        assert (tmp_path / name).read_bytes() == SOURCE
    assert not [p for p in tmp_path.rglob(".*.tmp")]
