"""Group commits (core.durability): what reaches the disk, and in which order.

Power loss cannot be simulated here; what is tested is the order the guarantees rest
on: no per-file fsync inside a group, the deferred final records written only after a
file-system sync that follows every other file of their runs, and a process that
dies before its group commits leaving runs that resume to the uninterrupted result.
"""

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, subprocess_env, toy_config

import core.durability as durability
from core.config import resolve
from core.durability import current_group, group_commit
from core.errors import RunStoreError
from core.locks import is_locked
from core.loop import execute, prepare_resume, prepare_run
from core.store import Run, atomic_write_json, read_json
from core.sweep import resume_sweep, run_points, run_sweep

SEEDS = (3, 4, 5)


@pytest.fixture
def fsyncs(monkeypatch):
    """The paths of the files and folders fsynced, in order."""
    calls = []
    real = os.fsync

    def recording(fd):
        calls.append(os.readlink(f"/proc/self/fd/{fd}"))
        return real(fd)

    monkeypatch.setattr(durability.os, "fsync", recording)
    return calls


@pytest.fixture
def syncs(monkeypatch):
    """Calls of the file-system sync; each records what ``probe()`` returns then."""
    events = []
    probe = [lambda: None]

    def recording(path):
        events.append(probe[0]())

    monkeypatch.setattr(durability, "sync_file_system", recording)
    return events, probe


def test_outside_a_group_a_write_fsyncs_its_file_and_its_folder(tmp_path, fsyncs):
    atomic_write_json(tmp_path / "a.json", {"x": 1})
    assert len(fsyncs) == 2
    assert fsyncs[0].startswith(str(tmp_path / ".a.json.")) and fsyncs[1] == str(tmp_path)


def test_in_a_group_deferred_actions_run_between_two_syncs(tmp_path, fsyncs, syncs):
    events, probe = syncs
    probe[0] = lambda: "sync"
    with group_commit() as group:
        atomic_write_json(tmp_path / "a.json", {"x": 1})
        atomic_write_json(tmp_path / "b.json", {"x": 2})
        group.defer(lambda: events.append("record"))
        assert events == []  # nothing synced yet, nothing recorded
    assert fsyncs == []
    assert events == ["sync", "record", "sync"]
    assert read_json(tmp_path / "b.json") == {"x": 2}
    assert current_group() is None


def test_a_failing_deferred_action_does_not_stop_the_others(tmp_path, syncs):
    done = []

    def fail():
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        with group_commit() as group:
            group.defer(fail)
            group.defer(lambda: done.append(1))
    assert done == [1]


def test_nested_groups_are_one_and_other_threads_are_outside(tmp_path, fsyncs, syncs):
    events, probe = syncs
    probe[0] = lambda: "sync"
    seen = []
    with group_commit() as outer:
        with group_commit() as inner:
            assert inner is outer
            atomic_write_json(tmp_path / "a.json", {})
            outer.defer(lambda: events.append("record"))
        assert events == []  # the inner block does not commit
        thread = threading.Thread(
            target=lambda: (
                seen.append(current_group()),
                atomic_write_json(tmp_path / "t.json", {}),
            )
        )
        thread.start()
        thread.join()
    assert seen == [None] and len(fsyncs) == 2  # the other thread fsynced its write
    assert events == ["sync", "record", "sync"]


def test_commit_if_due_waits_for_its_interval(tmp_path, syncs):
    events, probe = syncs
    probe[0] = lambda: "sync"
    with group_commit(interval=3600.0) as group:
        atomic_write_json(tmp_path / "a.json", {})
        group.commit_if_due()
        assert events == []
        group.interval = 0.0
        group.commit_if_due()
        assert events == ["sync"]
        group.commit_if_due()  # nothing new: no sync
        assert events == ["sync"]
    assert events == ["sync"]


def _config(tmp_path, registry, seed, steps=30):
    raw = toy_config(
        tmp_path / "runs",
        seed=seed,
        algorithm={"name": "toy_ensemble"},
        stoppers={"max_steps": {"steps": steps}},
        savers={},
    )
    return resolve(raw, registry)


def test_a_sweep_ensemble_records_each_end_after_a_sync_of_its_files(
    tmp_path, toy_registry, fsyncs, syncs
):
    """No file of a point is fsynced on its own; at some sync every point's final
    checkpoint is there while its meta.json still says running; then it says finished."""
    events, probe = syncs
    config = _config(tmp_path, toy_registry, 3)
    config["sweep"] = {"grid": {"model.width": [4]}, "seeds": 3}
    sweep_dirs = []

    def state():
        if not sweep_dirs:
            sweep_dirs.extend((tmp_path / "runs").glob("*/*/runs"))
        out = {}
        for run in sorted(sweep_dirs[0].iterdir()) if sweep_dirs else ():
            meta = read_json(run / "meta.json")
            out[run.name] = (meta["status"], (run / "checkpoint.npz").exists())
        return out

    probe[0] = state
    path = run_sweep(config, "", toy_registry, jobs=0)
    runs_dir = str(path / "runs")
    assert not [p for p in fsyncs if p.startswith(runs_dir)]  # the driver's files: outside
    points = sorted(p.name for p in (path / "runs").iterdir())
    assert len(points) == 3 and events
    saved = [e for e in events if e and all(e[p] == ("running", True) for p in points)]
    assert saved, events  # a sync when every final checkpoint exists and none is finished
    first_saved = events.index(saved[0])
    assert all(e[p][0] != "finished" for e in events[: first_saved + 1] for p in points)
    for point in points:
        assert Run(path / "runs" / point).meta["status"] == "finished"


def test_members_whose_end_was_not_committed_resume_to_the_uninterrupted_result(
    tmp_path, toy_registry
):
    """As a process killed before its group commit: the final meta.json is missing, the
    run locks are released by the kernel; each run resumes from its final checkpoint."""
    executions = [
        prepare_run(_config(tmp_path / "k", toy_registry, s), "", toy_registry) for s in SEEDS
    ]
    with group_commit() as group:
        execute(executions)
        assert len(group.deferred) == len(SEEDS)
        group.deferred.clear()  # the process dies here
    for ex in executions:
        assert Run(ex.path).meta["status"] == "running"
        ex.lock.release()  # what the kernel does
    resumed = [prepare_resume(ex.path, toy_registry) for ex in executions]
    assert execute(resumed) == ["finished"] * len(SEEDS)
    uninterrupted = [
        prepare_run(_config(tmp_path / "u", toy_registry, s), "", toy_registry) for s in SEEDS
    ]
    execute(uninterrupted)
    for ex, reference in zip(executions, uninterrupted):
        run, ref = Run(ex.path), Run(reference.path)
        assert run.meta["status"] == "finished" and run.meta["steps"] == 30
        np.testing.assert_array_equal(run.final_state()["W"], ref.final_state()["W"])
        np.testing.assert_array_equal(run.scalars["loss"], ref.scalars["loss"])


def test_run_points_results_are_what_each_points_meta_json_says(
    tmp_path, toy_registry, monkeypatch
):
    """A point's result is the meta its run wrote at its end (not read back); where that
    write failed, what the file says once the point is settled."""
    from core.store import RunStore

    fields = ("status", "reason", "steps", "final_loss")

    def check(results, items):
        for (path, _), result in zip(items, results):
            meta = read_json(path / "meta.json")
            assert {k: result[k] for k in fields} == {k: meta.get(k) for k in fields}

    items = [(tmp_path / "a" / f"p{s}", _config(tmp_path, toy_registry, s)) for s in SEEDS]
    results = run_points(items, "", toy_registry)
    assert [r["status"] for r in results] == ["finished"] * len(SEEDS)
    check(results, items)

    real = RunStore.write_meta

    def failing(self, meta):
        if meta["status"] == "finished" and self.path.name == "p4":
            raise OSError(28, "No space left on device")
        return real(self, meta)

    monkeypatch.setattr(RunStore, "write_meta", failing)
    items = [(tmp_path / "b" / f"p{s}", _config(tmp_path, toy_registry, s)) for s in SEEDS]
    results = run_points(items, "", toy_registry)
    assert [r["status"] for r in results] == ["finished", "failed", "finished"]
    assert "No space left" in results[1]["reason"]
    check(results, items)


# ---- background writes (group_commit(background=True): a sweep's ensembles) ----------


def test_background_writes_run_in_the_groups_thread_in_submission_order(tmp_path, monkeypatch):
    renames = []
    real = os.rename

    def recording(src, dst, **kwargs):
        renames.append((threading.current_thread().name, os.path.basename(dst)))
        return real(src, dst, **kwargs)

    monkeypatch.setattr(os, "rename", recording)
    names = [f"f{i:02d}.json" for i in range(20)]
    with group_commit(background=True):
        for i, name in enumerate(names):
            atomic_write_json(tmp_path / name, {"i": i})
    assert [dst for _, dst in renames] == names
    assert {thread for thread, _ in renames} == {"relulab-writer"}
    assert [read_json(tmp_path / n)["i"] for n in names] == list(range(20))


def test_a_read_waits_for_the_pending_write_of_its_file(tmp_path):
    atomic_write_json(tmp_path / "a.json", {"v": 1})
    release = threading.Event()
    with group_commit(background=True) as group:
        group.write(tmp_path / "blocker", release.wait)  # holds the writer
        atomic_write_json(tmp_path / "a.json", {"v": 2})
        assert (tmp_path / "a.json").read_text().count("1")  # not written yet
        threading.Timer(0.2, release.set).start()
        assert read_json(tmp_path / "a.json") == {"v": 2}  # waited for it


@pytest.mark.parametrize("spelling", ["link", "dotdot"])
def test_a_read_through_another_spelling_of_the_path_waits_too(tmp_path, spelling):
    run = tmp_path / "run"
    run.mkdir()
    atomic_write_json(run / "a.json", {"v": 1})
    if spelling == "link":
        (tmp_path / "alias").symlink_to(run)
        other = tmp_path / "alias" / "a.json"
    else:
        (run / "sub").mkdir()
        other = run / "sub" / ".." / "a.json"
    release = threading.Event()
    with group_commit(background=True) as group:
        group.write(tmp_path / "blocker", release.wait)  # holds the writer
        atomic_write_json(run / "a.json", {"v": 2})
        threading.Timer(0.2, release.set).start()
        assert read_json(other) == {"v": 2}  # waited for the write made as run/a.json


def test_a_bounded_queue_waits_and_writes_everything(tmp_path, monkeypatch):
    monkeypatch.setattr(durability.GroupCommit, "MAX_QUEUED_BYTES", 1)
    with group_commit(background=True):
        for i in range(10):
            atomic_write_json(tmp_path / f"{i}.json", {"i": i})
    assert [read_json(tmp_path / f"{i}.json")["i"] for i in range(10)] == list(range(10))


def test_after_a_failed_background_write_later_writes_raise_and_deferred_ones_see_it(tmp_path):
    seen = []

    def record_end():
        try:
            atomic_write_json(tmp_path / "meta.json", {"status": "finished"})
            seen.append("written")
        except Exception as exc:  # what Execution._record_end does: meta stays as it was
            seen.append(type(exc).__name__)

    with group_commit(background=True) as group:
        atomic_write_json(tmp_path / "meta.json", {"status": "running"})
        atomic_write_json(tmp_path / "missing" / "checkpoint.json", {})  # no such folder
        group.defer(record_end)
        group.drain()
        with pytest.raises(RunStoreError, match="checkpoint.json"):
            atomic_write_json(tmp_path / "other.json", {})
    assert seen == ["RunStoreError"]
    assert read_json(tmp_path / "meta.json") == {"status": "running"}
    assert not (tmp_path / "other.json").exists()


@pytest.mark.parametrize("background", [True, False])
def test_a_sweep_whose_ensemble_write_fails_records_no_point_as_ended_then_resumes(
    tmp_path, toy_registry, monkeypatch, background
):
    """In the background, no point of the ensemble reads finished; writing in the
    caller's thread, only the point whose write failed is not finished."""
    import core.store as store

    monkeypatch.setattr(durability.GroupCommit, "PROBE_WRITES", 1)
    monkeypatch.setattr(durability.GroupCommit, "SLOW_WRITE", 0.0 if background else 3600.0)

    config = _config(tmp_path, toy_registry, 3)
    config["sweep"] = {"grid": {"model.width": [4]}, "seeds": 3}
    real = store._atomic_write

    def failing(path, write, link_from=None):
        if path.name == "checkpoint.npz" and "0001" in str(path):
            raise OSError(28, "No space left on device")
        return real(path, write, link_from=link_from)

    monkeypatch.setattr(store, "_atomic_write", failing)
    path = run_sweep(config, "", toy_registry, jobs=0)
    points = sorted((path / "runs").iterdir())
    assert len(points) == 3
    for point in points:
        # a member that did not end has no meta.json: it is written at a run's first
        # save (core.loop.prepare_run's record_start), here its final one
        finished = (point / "meta.json").is_file() and Run(point).meta["status"] == "finished"
        assert finished == (not background and point.name != "0001")
        assert not is_locked(point / "run.lock")
    monkeypatch.setattr(store, "_atomic_write", real)
    resume_sweep(path, toy_registry, jobs=0)
    assert [Run(p).meta["status"] for p in points] == ["finished"] * 3


@pytest.mark.parametrize("slow, expected", [(0.0, True), (3600.0, False)])
def test_auto_background_decides_from_the_first_writes(tmp_path, monkeypatch, slow, expected):
    monkeypatch.setattr(durability.GroupCommit, "PROBE_WRITES", 3)
    monkeypatch.setattr(durability.GroupCommit, "SLOW_WRITE", slow)
    threads = []
    real = os.rename

    def recording(src, dst, **kwargs):
        threads.append(threading.current_thread().name)
        return real(src, dst, **kwargs)

    monkeypatch.setattr(os, "rename", recording)
    with group_commit(background="auto") as group:
        for i in range(6):
            atomic_write_json(tmp_path / f"{i}.json", {"i": i})
        assert group.background is expected
    assert threads[:3] == ["MainThread"] * 3  # the probe: in the caller's thread
    assert set(threads[3:]) == {"relulab-writer" if expected else "MainThread"}
    assert [read_json(tmp_path / f"{i}.json")["i"] for i in range(6)] == list(range(6))
    with pytest.raises(ValueError, match="background"):
        durability.GroupCommit(background="yes")


KILL_POINTS = """
import json, sys
from core.registry import get_registry
from core.sweep import run_points
run_points([tuple(item) for item in json.load(open(sys.argv[1]))], "", get_registry())
"""


@pytest.mark.parametrize("mode", ["on", "off"])
def test_an_ensemble_killed_while_training_resumes_to_the_uninterrupted_result(
    tmp_path, toy_registry, mode
):
    """kill -9 with background writes pending (``on``) or none (``off``): each member
    resumes from the last checkpoint that reached its folder and ends bit for bit
    where the uninterrupted ensemble does."""
    kill_file = tmp_path / "kill"
    kill_file.write_text("")

    def items(root, die_at):
        algorithm = {
            "name": "toy_ensemble",
            "die_at": die_at,
            "kill_file": str(kill_file),
            "sleep": 0.02,  # time for the writer to save the checkpoints before the kill
        }
        raw = {
            "algorithm": algorithm,
            "stoppers": {"max_steps": {"steps": 40}},
            "savers": {"periodic": {"every_seconds": 0.0, "every_steps": 5}},
        }
        return [
            (str(root / f"p{seed}"), resolve(toy_config(root, seed=seed, **raw), toy_registry))
            for seed in SEEDS
        ]

    killed = items(tmp_path / "killed", 23)
    (tmp_path / "items.json").write_text(json.dumps(killed))
    env = subprocess_env()
    env["RELULAB_BACKGROUND_WRITES"] = mode
    proc = subprocess.run(
        [sys.executable, "-c", KILL_POINTS, str(tmp_path / "items.json")],
        cwd=ROOT,
        env=env,
        capture_output=True,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    assert not kill_file.exists()
    results = run_points([(Path(p), c) for p, c in killed], "", toy_registry)
    assert [r["status"] for r in results] == ["finished"] * len(SEEDS)
    assert {r["action"] for r in results} == {"resume"}  # from checkpoints on the disk, results
    reference = items(tmp_path / "reference", -1)
    run_points([(Path(p), c) for p, c in reference], "", toy_registry)
    for (path, _), (ref, _) in zip(killed, reference):
        run, want = Run(path), Run(ref)
        assert run.meta["steps"] == want.meta["steps"] == 40
        np.testing.assert_array_equal(run.final_state()["W"], want.final_state()["W"])
        np.testing.assert_array_equal(run.scalars["loss"], want.scalars["loss"])


def test_background_writes_setting_is_checked(monkeypatch):
    from core.errors import ConfigError
    from core.sweep._worker import background_writes

    for value, expected in (("on", True), ("off", False), ("", "auto"), ("Auto", "auto")):
        monkeypatch.setenv("RELULAB_BACKGROUND_WRITES", value)
        assert background_writes() == expected
    monkeypatch.setenv("RELULAB_BACKGROUND_WRITES", "sometimes")
    with pytest.raises(ConfigError, match="RELULAB_BACKGROUND_WRITES"):
        background_writes()


def test_write_keys_resolve_links_as_realpath(tmp_path):
    """A pending write's key is its folder's real path, however the path is spelled."""
    real = tmp_path / "real" / "a" / "b"
    real.mkdir(parents=True)
    (tmp_path / "link").symlink_to(tmp_path / "real")
    (tmp_path / "real" / "c").symlink_to(real)
    for spelling in (
        real,
        tmp_path / "link" / "a" / "b",  # a linked parent
        tmp_path / "real" / "c",  # the folder itself a link
        tmp_path / "link" / "c",
        tmp_path / "real" / "a" / "new",  # not made yet
        tmp_path / "link" / "a" / "new",
    ):
        folder = os.path.abspath(spelling)
        assert durability._real_folder(folder) == os.path.realpath(folder), spelling
        key = durability._write_key(spelling / "meta.json")
        assert key == os.path.join(os.path.realpath(folder), "meta.json")
