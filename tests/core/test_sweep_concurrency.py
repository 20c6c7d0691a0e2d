"""Two processes resuming one sweep at once: one runs it, the other is refused untouched.

A sweep of ``configs/width_sweep.py`` (shortened) is killed with ``kill -9`` of its
whole process group midway, which leaves points ``running`` without a process and a
``sweep.lock`` of a dead process. Copies of that folder are then resumed by two
``runner.py --resume SWEEP --jobs 1`` started at the same moment (both wait, imports
done, for one go file), once per copy.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import ROOT, orphan_semaphores_cleaned, semaphore_names, subprocess_env

from core.store import load_run
from core.sweep import load_sweep

STEPS = 400
SWEEP = [
    str(ROOT / "configs" / "width_sweep.py"),
    f"stoppers.max_steps.steps={STEPS}",
    "savers.periodic.every_steps=100",
    "sweep.grid={'model.width': [10, 40, 160], 'data.n': [5]}",
    "sweep.seeds=3",
]
TRIALS = 6

# runner.py's main at a given moment: imports and the registry are ready before the go file.
# A refused lock is retried for core.locks.ACQUIRE_GRACE (0.5 s): a resume of what is left
# can end within it (a pool's start and a few tiny points), and the other one would then
# find the sweep finished; a tenth of it keeps the race this test is about.
LAUNCHER = """
import os, runpy, sys, time
go, script, args = sys.argv[1], sys.argv[2], sys.argv[3:]
import runner
import core.locks
from core.registry import get_registry
get_registry()
core.locks.ACQUIRE_GRACE = 0.05
open(go + "." + str(os.getpid()), "w").close()
while not os.path.exists(go):
    time.sleep(0.0005)
sys.argv = [script, *args]
runpy.run_path(script, run_name="__main__")
"""


def _wait(predicate, what, proc=None, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"ended before {what}: {proc.stderr.read()}")
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def _statuses(sweep_dir):
    out = []
    for meta in sweep_dir.glob("runs/*/meta.json"):
        try:
            out.append(json.loads(meta.read_text())["status"])
        except (OSError, ValueError, KeyError):
            pass
    return out


def _wait_for_group_gone(pgid, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.01)


def _killed_midway(tmp_path):
    """A sweep folder whose driver and workers were killed with points half done."""
    semaphores = semaphore_names()
    proc = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "runner.py"),
            *SWEEP,
            "--jobs",
            "2",
            "--runs-dir",
            str(tmp_path / "runs"),
        ],
        cwd=ROOT,
        env=subprocess_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:

        def midway():
            sweeps = list((tmp_path / "runs").glob("width_sweep/*"))
            statuses = _statuses(sweeps[0]) if sweeps else []
            return statuses.count("finished") >= 2 and "running" in statuses

        _wait(midway, "points finished and running", proc)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        _wait_for_group_gone(proc.pid)  # its workers still map its semaphores until then
        orphan_semaphores_cleaned(semaphores)  # its resource tracker was killed too
    (sweep_dir,) = (tmp_path / "runs").glob("width_sweep/*")
    return sweep_dir


def _resume_together(sweep_dir, go):
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                LAUNCHER,
                str(go),
                str(ROOT / "runner.py"),
                "--resume",
                str(sweep_dir),
                "--jobs",
                "1",
            ],
            cwd=ROOT,
            env=subprocess_env(),
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(2)
    ]
    _wait(lambda: len(list(go.parent.glob(go.name + ".*"))) == 2, "both resumers ready")
    go.touch()
    return [(proc, *proc.communicate(timeout=300)) for proc in procs]


def test_two_resumes_at_once_one_finishes_the_sweep_the_other_touches_nothing(tmp_path):
    killed = _killed_midway(tmp_path)
    assert "running" in _statuses(killed)  # left without a process by kill -9
    broken = []
    for trial in range(TRIALS):
        sweep_dir = tmp_path / f"trial{trial}" / killed.name
        shutil.copytree(killed, sweep_dir)
        outcomes = _resume_together(sweep_dir, tmp_path / f"trial{trial}" / "go")
        problem = _problem(sweep_dir, outcomes)
        if problem:
            broken.append(f"trial {trial}: {problem}")
    assert not broken, f"{len(broken)} of {TRIALS} trials: " + "; ".join(broken)


def _problem(sweep_dir, outcomes):
    """What went wrong with one pair of resumes, or None."""
    codes = sorted(proc.returncode for proc, _, _ in outcomes)
    errors = [err.strip() for proc, _, err in outcomes if proc.returncode]
    if codes != [0, 2]:
        return f"exit codes {codes}: {errors}"
    if not errors[0].startswith("error: ") or "\n" in errors[0]:
        return f"not a one-line error: {errors[0]!r}"
    for point in load_sweep(sweep_dir)["points"]:
        folder = sweep_dir / point["run"]
        try:
            run = load_run(folder)
            steps = run.scalars["step"]
        except Exception as exc:
            return f"point {point['id']}: {type(exc).__name__}: {exc}"
        if not (folder / "config.json").is_file() or run.meta["status"] != "finished":
            return f"point {point['id']} is {run.meta['status']}: {run.meta.get('reason')}"
        if not np.array_equal(steps, np.arange(0, STEPS + 1, 10)):
            return f"point {point['id']}: trace steps {steps.tolist()}"
    if "in use by another process" not in errors[0]:
        return f"refused with another message: {errors[0]}"
    return None


def test_orphan_semaphore_cleaning_spares_live_ones():
    import mmap

    if not os.path.isdir("/dev/shm"):
        pytest.skip("no /dev/shm")
    before = semaphore_names()
    names = {"live": "sem.mp-relulab-test-live", "orphan": "sem.mp-relulab-test-orphan"}
    for name in names.values():
        with open(os.path.join("/dev/shm", name), "wb") as fh:
            fh.write(b"\0" * 32)
    # a semaphore in use is mapped by its process (glibc maps each one it opens)
    with open(os.path.join("/dev/shm", names["live"]), "r+b") as fh:
        live = mmap.mmap(fh.fileno(), 32)
    try:
        orphan_semaphores_cleaned(before)  # (and orphans other tests' kills left meanwhile)
        left = semaphore_names()
        assert names["orphan"] not in left  # (a concurrent test's cleaning may take it too)
        assert names["live"] in left
    finally:
        live.close()
        os.unlink(os.path.join("/dev/shm", names["live"]))
