"""Run-store safety: corrupt files, unwritable places, file modes, symlinks, crashed runs."""

import json
import os
import socket
import stat
import subprocess
import sys

import numpy as np
import pytest

from core.errors import RunStoreError
from core.locks import FolderLock
from core.store import (
    Run,
    RunStore,
    TraceWriter,
    atomic_save_npz,
    atomic_write_bytes,
    atomic_write_json,
    load_npz,
    load_run,
    read_stream,
    save_state,
)


def _make_run(tmp_path, status="finished", **meta):
    store = RunStore.create_at(tmp_path / "run")
    store.write_meta({"status": status, "reason": None, **meta})
    atomic_write_json(store.path / "config.json", {"experiment": "x"})
    atomic_save_npz(store.path / "problem.npz", {"X": np.ones((3, 2)), "Y": np.zeros(3)})
    store.write_checkpoint({"loop": {"step": 3, "n_chunks": 1}, "W": np.ones(2)})
    trace = TraceWriter(store.trace_dir)
    trace.drop_chunks_from(0)
    trace.append("scalars", {"step": 0, "loss": 1.0})
    trace.flush()
    return store


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


# -- corrupt files ------------------------------------------------------------------
@pytest.mark.parametrize("name, attr", [("meta.json", "meta"), ("config.json", "config")])
@pytest.mark.parametrize("text", ["{bad json", "", "[1, 2]", "\udcff"])
def test_corrupt_json_is_named(tmp_path, name, attr, text):
    store = _make_run(tmp_path)
    (store.path / name).write_bytes(text.encode("utf-8", "surrogateescape"))
    with pytest.raises(RunStoreError, match=f"{name} is corrupt") as info:
        getattr(Run(store.path), attr)
    assert str(store.path / name) in str(info.value) and "\n" not in str(info.value)


def test_missing_config_is_named(tmp_path):
    store = _make_run(tmp_path)
    (store.path / "config.json").unlink()
    with pytest.raises(RunStoreError, match="config.json is missing"):
        _ = Run(store.path).config


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty", "npy"])
def test_corrupt_problem_is_named(tmp_path, damage):
    store = _make_run(tmp_path)
    path = store.path / "problem.npz"
    if damage == "truncate":
        _truncate(path)
    elif damage == "garbage":
        path.write_bytes(b"PK\x03\x04" + b"\x00" * 50)
    elif damage == "empty":
        path.write_bytes(b"")
    else:
        np.save(path.open("wb"), np.ones(3))
    with pytest.raises(RunStoreError, match="problem.npz is corrupt"):
        _ = Run(store.path).problem
    with pytest.raises(RunStoreError, match="problem.npz is corrupt"):
        load_npz(path)


def test_missing_problem_is_named(tmp_path):
    store = _make_run(tmp_path)
    (store.path / "problem.npz").unlink()
    with pytest.raises(RunStoreError, match="problem.npz is missing"):
        load_npz(store.path / "problem.npz")
    with pytest.raises(RunStoreError, match="problem.npz is missing"):
        _ = Run(store.path).problem


def test_bad_crc_is_named(tmp_path):
    store = _make_run(tmp_path)
    path = store.path / "problem.npz"
    data = bytearray(path.read_bytes())
    at = data.index(b"\x00\x00\xf0\x3f")  # a 1.0 of X
    data[at + 3] = 0x40
    path.write_bytes(bytes(data))
    with pytest.raises(RunStoreError, match="problem.npz is corrupt"):
        load_npz(path)


@pytest.mark.parametrize("damage", ["truncate", "no_json", "bad_json", "missing_array"])
def test_corrupt_checkpoint_is_named(tmp_path, damage):
    store = _make_run(tmp_path)
    path = store.checkpoint_path
    if damage == "truncate":
        _truncate(path)
    elif damage == "no_json":
        atomic_save_npz(path, {"W": np.ones(2)})
    elif damage == "bad_json":
        atomic_save_npz(path, {"__json__": np.frombuffer(b"{oops", np.uint8)})
    else:
        blob = json.dumps({"W": {"__array__": "W"}}).encode()
        atomic_save_npz(path, {"__json__": np.frombuffer(blob, np.uint8)})
    with pytest.raises(RunStoreError, match="checkpoint.npz is corrupt.*delete it"):
        store.read_checkpoint()


def test_corrupt_meta_through_the_store(tmp_path):
    store = _make_run(tmp_path)
    store.meta_path.write_text("{")
    with pytest.raises(RunStoreError, match="meta.json is corrupt"):
        store.read_meta()


def test_a_fifo_is_not_read(tmp_path):
    store = _make_run(tmp_path)
    (store.path / "problem.npz").unlink()
    os.mkfifo(store.path / "problem.npz")
    with pytest.raises(RunStoreError, match="problem.npz is not a regular file"):
        load_npz(store.path / "problem.npz")


# -- creating run directories ---------------------------------------------------------
def test_create_in_a_read_only_runs_dir(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    runs.chmod(0o555)
    try:
        if os.access(runs, os.W_OK):
            pytest.skip("running as root: permissions are not enforced")
        with pytest.raises(RunStoreError, match=f"cannot create the run directory {runs}/exp"):
            RunStore.create(runs, "exp", "20240101T000000Z", "abc")
    finally:
        runs.chmod(0o755)


def test_create_where_the_runs_dir_is_a_file(tmp_path):
    runs = tmp_path / "runs"
    runs.write_text("")
    with pytest.raises(RunStoreError, match=f"{runs} is not a directory"):
        RunStore.create(runs, "exp", "20240101T000000Z", "abc")
    with pytest.raises(RunStoreError, match=f"{runs} is not a directory"):
        RunStore.create_at(runs / "x")


def test_create_an_existing_run_dir(tmp_path):
    RunStore.create_at(tmp_path / "run")
    with pytest.raises(RunStoreError, match="already exists"):
        RunStore.create_at(tmp_path / "run")


def test_create_with_a_too_long_experiment_name(tmp_path):
    with pytest.raises(RunStoreError, match="name too long") as info:
        RunStore.create(tmp_path, "e" * 300, "20240101T000000Z", "abc")
    assert str(tmp_path) in str(info.value)


def test_create_with_a_nul_in_the_experiment_name(tmp_path):
    with pytest.raises(RunStoreError, match=r"a\\0b.*NUL") as info:
        RunStore.create(tmp_path, "a\0b", "20240101T000000Z", "abc")
    assert "\0" not in str(info.value)


# -- file modes -----------------------------------------------------------------------
@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_files_get_the_mode_of_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        store = RunStore.create_at(tmp_path / "run")
        store.write_meta({"status": "running"})
        atomic_write_bytes(store.path / "config.py", b"x = 1\n")
        atomic_save_npz(store.path / "problem.npz", {"X": np.ones(2)})
        save_state(store.checkpoint_path, {"a": np.ones(2)})
        trace = TraceWriter(store.trace_dir)
        trace.append("scalars", {"step": 0})
        trace.flush()
        atomic_write_json(store.meta_path, {"status": "finished"})  # replacing keeps it
    finally:
        os.umask(old)
    files = [p for p in store.path.rglob("*") if p.is_file()]
    assert len(files) == 6
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == mode, path


# -- symlinks -------------------------------------------------------------------------
def test_write_refuses_a_symlinked_file(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    link = tmp_path / "meta.json"
    link.symlink_to(victim)
    with pytest.raises(RunStoreError, match=f"{link} is a symbolic link"):
        atomic_write_json(link, {"a": 1})
    assert victim.read_text() == "keep" and link.is_symlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["meta.json", "victim.txt"]


def test_write_refuses_a_symlinked_folder(tmp_path):
    store = _make_run(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (store.path / "plots").symlink_to(elsewhere)
    with pytest.raises(RunStoreError, match=f"{store.path / 'plots'} is a symbolic link"):
        atomic_write_bytes(store.path / "plots" / "loss.png", b"png")
    assert not list(elsewhere.iterdir())


def _symlinked_trace(tmp_path):
    store = _make_run(tmp_path)
    victim = tmp_path / "victim"
    victim.mkdir()
    for name in ("scalars.000000.npz", "scalars.000005.npz", "chunks.json", ".x.tmp"):
        (victim / name).write_bytes(b"precious")
    real = store.trace_dir.rename(tmp_path / "real_trace")
    store.trace_dir.symlink_to(victim)
    return store, victim, real


def test_trace_writer_refuses_a_symlinked_trace_dir(tmp_path):
    store, victim, _ = _symlinked_trace(tmp_path)
    with pytest.raises(RunStoreError, match=f"{store.trace_dir} is a symbolic link"):
        TraceWriter(store.trace_dir, 0)
    assert sorted(p.read_bytes() for p in victim.iterdir()) == [b"precious"] * 4


def test_drop_chunks_never_unlinks_through_a_symlink(tmp_path):
    store = _make_run(tmp_path)
    trace = TraceWriter(store.trace_dir, 1)
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "scalars.000005.npz").write_bytes(b"precious")
    store.trace_dir.rename(tmp_path / "real_trace")
    store.trace_dir.symlink_to(victim)  # swapped under a live writer
    with pytest.raises(RunStoreError, match="is a symbolic link"):
        trace.drop_chunks_from(1)
    assert (victim / "scalars.000005.npz").read_bytes() == b"precious"


def test_open_cleans_temp_files_without_following_symlinks(tmp_path):
    store, victim, _ = _symlinked_trace(tmp_path)
    (store.path / ".meta.json.abc.tmp").write_bytes(b"")
    (store.path / "plots").mkdir()
    (store.path / "plots" / ".loss.png.x.tmp").write_bytes(b"")
    RunStore.open(store.path)
    assert (victim / ".x.tmp").exists()
    assert not (store.path / ".meta.json.abc.tmp").exists()
    assert not (store.path / "plots" / ".loss.png.x.tmp").exists()
    store.clean_temp_files()


def test_reading_through_a_symlinked_trace_still_works(tmp_path):
    store = _make_run(tmp_path)
    real = store.trace_dir.rename(tmp_path / "real_trace")
    store.trace_dir.symlink_to(real)
    assert read_stream(store.trace_dir, "scalars")["step"].tolist() == [0]
    assert load_run(store.path).scalars["loss"].tolist() == [1.0]


def test_a_symlinked_run_folder_is_opened_at_its_target(tmp_path):
    store = _make_run(tmp_path)
    link = tmp_path / "mine"
    link.symlink_to(store.path)
    opened = RunStore.open(link)
    opened.write_meta({"status": "interrupted"})
    assert Run(link).meta["status"] == "interrupted"
    TraceWriter(opened.trace_dir, 1).drop_chunks_from(1)


# -- crashed runs ----------------------------------------------------------------------
def _dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_running_without_its_process_reads_crashed_with_a_reason(tmp_path):
    store = _make_run(tmp_path, status="running", host=socket.gethostname(), pid=_dead_pid())
    meta = Run(store.path).meta
    assert meta["status"] == "crashed"
    assert meta["reason"] == "process ended without a final save"


def test_running_elsewhere_without_a_lock_stays_running(tmp_path):
    store = _make_run(tmp_path, status="running", host="elsewhere", pid=_dead_pid())
    assert Run(store.path).meta["status"] == "running"


def test_run_lock_decides_on_any_host(tmp_path):
    store = _make_run(tmp_path, status="running", host="elsewhere", pid=os.getpid())
    lock = FolderLock(store.path / "run.lock", "run")
    with lock:
        assert Run(store.path).meta["status"] == "running"
    # released (as the kernel does when the holder dies): crashed, whatever the pid says
    meta = Run(store.path).meta
    assert meta["status"] == "crashed" and meta["reason"]


def test_a_crashed_run_keeps_a_reason_it_had(tmp_path):
    store = _make_run(tmp_path, status="running", host=socket.gethostname(), pid=_dead_pid())
    meta = json.loads(store.meta_path.read_text())
    meta["reason"] = "out of memory"
    atomic_write_json(store.meta_path, meta)
    assert Run(store.path).meta["reason"] == "out of memory"


# -- run locks --------------------------------------------------------------------------
def test_acquire_outlasts_a_probe(tmp_path):
    # is_locked holds the lock for an instant; a run starting then must not be refused
    import fcntl
    import threading

    path = tmp_path / "run.lock"
    path.write_text("")
    fd = os.open(path, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # a probe, caught mid-test
    threading.Timer(0.05, os.close, [fd]).start()
    with FolderLock(path, "run x") as lock:
        assert lock.held


def test_probes_do_not_see_each_other(tmp_path):
    import fcntl

    from core.locks import is_locked

    path = tmp_path / "run.lock"
    path.write_text("")
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # another process testing it
        assert not is_locked(path)
    finally:
        os.close(fd)
    with FolderLock(path, "run x"):
        assert is_locked(path)
    assert not is_locked(path)


def test_a_held_lock_is_still_refused(tmp_path):
    path = tmp_path / "run.lock"
    with FolderLock(path, "run x"):
        with pytest.raises(RunStoreError, match="run x is in use by another process"):
            FolderLock(path, "run x").acquire()


def test_a_new_holder_replaces_the_details_a_released_lock_keeps(tmp_path):
    from core.locks import lock_holder

    path = tmp_path / "run.lock"
    with FolderLock(path, "run x"):
        pass
    assert lock_holder(path)["pid"] == os.getpid()  # kept after the release
    # a longer record of an earlier holder on another host: no byte of it survives
    path.write_text(json.dumps({"pid": 10**9, "host": "h" * 300, "since": 0.0}) + "\n")
    with FolderLock(path, "run x"):
        holder = lock_holder(path)
    assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()


def test_create_where_the_runs_dir_is_not_writable(tmp_path, monkeypatch):
    import errno
    from pathlib import Path

    def refuse(self, *args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(self))

    monkeypatch.setattr(Path, "mkdir", refuse)
    with pytest.raises(RunStoreError, match="Permission denied; choose a writable runs directory"):
        RunStore.create(tmp_path / "runs", "exp", "20240101T000000Z", "abc")
