"""The run loop and run store: statuses, crash safety, exact resume, no pickle."""

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import ROOT, subprocess_env, toy_config

from core.config import resolve
from core.loop import resume_run, start_run
from core.store import load_run


def _run(tmp_path, registry, **sections):
    config = resolve(toy_config(tmp_path / "runs", **sections), registry)
    return start_run(config, "# source\n", registry)


def test_finished_run_has_every_file_and_field(tmp_path, toy_registry):
    run = _run(tmp_path, toy_registry)
    assert run.meta["status"] == "finished" and run.meta["reason"] == "max_steps"
    assert run.meta["steps"] == 200 and run.meta["seed"] == 3
    for key in ("started", "ended", "wall_time", "versions", "git_commit", "host"):
        assert key in run.meta
    assert set(run.meta["versions"]) >= {"relulab", "python", "numpy", "torch"}
    assert (run.path / "config.py").read_text() == "# source\n"
    assert json.loads((run.path / "config.json").read_text()) == run.config
    np.testing.assert_array_equal(run.scalars["step"], np.arange(201))
    np.testing.assert_array_equal(run.snapshots.steps, np.arange(0, 201, 20))
    assert run.snapshots["W"].shape == (11, 2, 16)
    np.testing.assert_array_equal(run.snapshots["W"][0], run.problem["W0"])
    assert run.path.parent.name == "toy" and run.path.name[:8].isdigit()


def test_load_run_latest(tmp_path, toy_registry):
    first = _run(tmp_path, toy_registry)
    second = _run(tmp_path, toy_registry)
    assert load_run("latest", runs_dir=tmp_path / "runs").path == second.path
    # made within one second: the folders' stamps tie and the random suffix must not decide
    stamp = first.path.name.split("-")[0]
    older = first.path.rename(first.path.with_name(f"{stamp}-ffffff"))
    newer = second.path.rename(second.path.with_name(f"{stamp}-000000"))
    assert load_run("latest", runs_dir=tmp_path / "runs").path == newer
    assert older.name > newer.name


def test_same_seed_same_result_other_seed_differs(tmp_path, toy_registry):
    a = _run(tmp_path, toy_registry).final_state()["W"]
    b = _run(tmp_path, toy_registry).final_state()["W"]
    c = _run(tmp_path, toy_registry, seed=4).final_state()["W"]
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_nan_is_diverged_and_data_kept(tmp_path, toy_registry):
    run = _run(tmp_path, toy_registry, algorithm={"nan_at": 57})
    assert run.meta["status"] == "diverged"
    assert "non-finite" in run.meta["reason"]
    assert run.scalars["step"][-1] == 57 and np.isnan(run.scalars["loss"][-1])
    assert np.all(np.isfinite(run.scalars["loss"][:-1]))
    assert run.snapshots.steps[-1] == 57


def test_exception_is_failed_with_trace_kept(tmp_path, toy_registry):
    config = resolve(toy_config(tmp_path / "runs", algorithm={"raise_at": 33}), toy_registry)
    with pytest.raises(RuntimeError, match="toy failure"):
        start_run(config, "", toy_registry)
    run = load_run(next((tmp_path / "runs" / "toy").iterdir()))
    assert run.meta["status"] == "failed" and "toy failure at step 33" in run.meta["reason"]
    assert run.scalars["step"][-1] == 32


@pytest.mark.parametrize(
    "stopper, params, reason",
    [
        ("loss_threshold", {"value": 0.5}, "loss_threshold"),
        ("grad_norm", {"threshold": 10.0}, "grad_norm"),
        ("wall_time", {"seconds": 0.05}, "wall_time"),
    ],
)
def test_stop_reasons(tmp_path, toy_registry, stopper, params, reason):
    run = _run(
        tmp_path,
        toy_registry,
        stoppers={"max_steps": {"steps": 10**6}, stopper: params},
        algorithm={"sleep": 0.001 if stopper == "wall_time" else 0.0},
    )
    assert run.meta["status"] == "finished" and run.meta["reason"] == reason
    if stopper == "loss_threshold":
        assert run.scalars["loss"][-1] <= 0.5 < run.scalars["loss"][-2]


def test_divergence_bound(tmp_path, toy_registry):
    run = _run(tmp_path, toy_registry, stoppers={"divergence": {"max_loss": 1e-3}})
    assert run.meta["status"] == "diverged" and "above max_loss" in run.meta["reason"]
    assert run.meta["steps"] == 0


def test_resume_extends_a_finished_run_exactly(tmp_path, toy_registry):
    reference = _run(tmp_path, toy_registry, stoppers={"max_steps": {"steps": 150}})
    short = _run(tmp_path, toy_registry, stoppers={"max_steps": {"steps": 90}})
    resumed = resume_run(short.path, toy_registry, overrides=["stoppers.max_steps.steps=150"])
    assert resumed.meta["status"] == "finished" and resumed.meta["steps"] == 150
    for key in ("W", "a"):
        np.testing.assert_array_equal(resumed.final_state()[key], reference.final_state()[key])
    np.testing.assert_array_equal(resumed.scalars["step"], np.arange(151))
    np.testing.assert_array_equal(resumed.scalars["loss"], reference.scalars["loss"])
    assert resumed.meta["resumes"][0]["from_step"] == 90


def assert_no_pickle(run_dir, killed=False):
    """Every file of a run is JSON, text or an .npz that loads without pickle.

    A killed run may hold the hidden temp file of a write in progress (never read;
    removed on resume).
    """
    for path in run_dir.rglob("*"):
        if path.is_dir() or (killed and path.name.startswith(".") and path.suffix == ".tmp"):
            continue
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as f:
                for key in f.files:
                    assert f[key].dtype != object
        elif path.suffix == ".json":
            json.loads(path.read_text())
        elif path.name == "run.lock":  # empty, or the holder's JSON while it runs
            text = path.read_text()
            assert not text.strip() or json.loads(text)["pid"]
        elif path.suffix in (".py", ".csv"):
            path.read_text()
        elif path.suffix == ".png":
            assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        else:
            raise AssertionError(f"unexpected file in a run: {path}")


def test_run_directory_contains_no_pickle(tmp_path, toy_registry):
    run = _run(tmp_path, toy_registry)
    assert_no_pickle(run.path)


# -- subprocess tests: signals and kill -9 ------------------------------------------
CONFIG_TEMPLATE = """
config = {{
    "experiment": "toy", "seed": 5, "model": {{"width": 16}},
    "data": {{"name": "toy_data"}}, "init": {{"name": "toy_init"}},
    "algorithm": {{"name": "toy_sgd", "sleep": {sleep}}},
    "stoppers": {{"max_steps": {{"steps": {steps}}}}},
    "loggers": {{"scalars": {{"every": 1}}, "snapshots": {{"every": 10}}}},
    "savers": {{"periodic": {{"every_seconds": 0.0, "every_steps": {save_every}}}}},
    "run": {{"display": "plain"}},
}}
"""


def _write_config(tmp_path, steps, sleep, save_every=7):
    path = tmp_path / "toy_config.py"
    path.write_text(CONFIG_TEMPLATE.format(steps=steps, sleep=sleep, save_every=save_every))
    return path


def _start(config_path, runs_dir, *extra):
    return subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "runner.py"),
            str(config_path),
            "--runs-dir",
            str(runs_dir),
            *extra,
        ],
        cwd=ROOT,
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _wait_for_run(runs_dir, proc, min_steps=0, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        metas = list(runs_dir.glob("toy/*/meta.json"))
        if metas:
            meta = json.loads(metas[0].read_text())
            if meta.get("steps", 0) >= min_steps:
                return metas[0].parent
        if proc.poll() is not None:
            raise AssertionError(proc.stderr.read().decode())
        time.sleep(0.02)
    raise AssertionError("run did not start")


@pytest.mark.parametrize("sig, name", [(signal.SIGTERM, "SIGTERM"), (signal.SIGINT, "SIGINT")])
def test_signal_leaves_status_interrupted(tmp_path, toy_registry, sig, name):
    config_path = _write_config(tmp_path, steps=10**6, sleep=0.002)
    proc = _start(config_path, tmp_path / "runs")
    run_dir = _wait_for_run(tmp_path / "runs", proc, min_steps=10)
    proc.send_signal(sig)
    assert proc.wait(timeout=30) == 130
    run = load_run(run_dir)
    assert run.meta["status"] == "interrupted" and run.meta["reason"] == name
    steps = run.scalars["step"]
    assert steps[-1] == run.meta["steps"] >= 10
    np.testing.assert_array_equal(steps, np.arange(len(steps)))
    extend = [f"stoppers.max_steps.steps={steps[-1] + 5}"]
    resumed = resume_run(run_dir, toy_registry, overrides=extend)
    assert resumed.meta["status"] == "finished" and resumed.meta["steps"] == steps[-1] + 5


def test_kill_9_at_random_moments_then_resume_equals_uninterrupted(tmp_path, toy_registry):
    steps = 400
    config_path = _write_config(tmp_path, steps=steps, sleep=0.004)
    from core.config import load

    config, source, _ = load(config_path, [f"run.runs_dir={tmp_path / 'reference'}"], toy_registry)
    reference = start_run(config, source, toy_registry).final_state()
    rng = np.random.default_rng(2024)
    for trial in range(4):
        runs_dir = tmp_path / f"trial{trial}"
        proc = _start(config_path, runs_dir)
        run_dir = _wait_for_run(runs_dir, proc, min_steps=1)
        time.sleep(rng.uniform(0.0, 0.4))
        proc.kill()
        proc.wait()
        killed = load_run(run_dir)
        assert killed.meta["status"] == "crashed", "the kill must land mid-run"
        assert killed.meta["reason"] and killed.meta["steps"] < steps
        if len(killed.scalars):
            got = killed.scalars["step"]
            np.testing.assert_array_equal(got, np.arange(len(got)))
        assert_no_pickle(run_dir, killed=True)
        resumed = resume_run(run_dir, toy_registry)
        assert_no_pickle(run_dir)
        assert resumed.meta["status"] == "finished" and resumed.meta["steps"] == steps
        np.testing.assert_array_equal(resumed.scalars["step"], np.arange(steps + 1))
        for key in ("W", "a"):
            np.testing.assert_array_equal(resumed.final_state()[key], reference[key])


def test_refused_resumes_leave_a_writing_run_untouched(tmp_path, toy_registry):
    """A process that saves every step keeps running while resumes are refused."""
    from core.errors import RunStoreError

    config_path = _write_config(tmp_path, steps=10**6, sleep=0.002, save_every=1)
    proc = _start(config_path, tmp_path / "runs")
    run_dir = _wait_for_run(tmp_path / "runs", proc, min_steps=5)
    for _ in range(30):
        with pytest.raises(RunStoreError, match="in use by another process"):
            resume_run(run_dir, toy_registry)
    cli = subprocess.run(
        [sys.executable, str(ROOT / "runner.py"), "--resume", str(run_dir)],
        cwd=ROOT,
        env=subprocess_env(),
        capture_output=True,
        text=True,
    )
    assert cli.returncode == 2 and "in use by another process" in cli.stderr
    assert proc.poll() is None, proc.stderr.read().decode()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 130, proc.stderr.read().decode()
    run = load_run(run_dir)
    assert run.meta["status"] == "interrupted" and run.meta["reason"] == "SIGTERM"
    steps = run.scalars["step"]
    np.testing.assert_array_equal(steps, np.arange(run.meta["steps"] + 1))


def test_setup_failure_marks_the_run_failed(tmp_path, toy_registry):
    config = resolve(toy_config(tmp_path / "runs", algorithm={"fail_setup": True}), toy_registry)
    with pytest.raises(ValueError, match="toy setup failure"):
        start_run(config, "", toy_registry)
    run = load_run(next((tmp_path / "runs" / "toy").iterdir()))
    assert run.meta["status"] == "failed" and "ValueError" in run.meta["reason"]


def test_asking_git_writes_nothing_in_the_checkout(tmp_path):
    # git status refreshes a stale index under .git/index.lock unless told not to: a
    # run killed meanwhile would leave the lock and refuse the researcher's next commit
    import os
    import shutil
    import subprocess

    from core.provenance import _ask_git

    if shutil.which("git") is None:
        pytest.skip("needs git")

    def git(*args):
        command = ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args]
        return subprocess.run(command, cwd=tmp_path, check=True, capture_output=True, text=True)

    git("init", "-q")
    (tmp_path / "f.txt").write_text("a\n")
    git("add", "f.txt")
    git("commit", "-qm", "x")
    commit = git("rev-parse", "HEAD").stdout.strip()
    index = tmp_path / ".git" / "index"
    os.utime(index, ns=(10**18, 10**18))  # the index older than the file's new stat
    stamp = index.stat().st_mtime_ns
    os.utime(tmp_path / "f.txt", ns=(2 * 10**18, 2 * 10**18))
    assert _ask_git(tmp_path) == commit  # same content: not dirty
    assert index.stat().st_mtime_ns == stamp  # the index was not rewritten
    (tmp_path / "f.txt").write_text("b\n")
    assert _ask_git(tmp_path) == commit + "+dirty"
    assert index.stat().st_mtime_ns == stamp


def test_git_is_asked_once_per_cache_period(monkeypatch):
    import core.provenance as loop

    asked, clock = [], [1000.0]
    monkeypatch.setattr(loop, "_git_cache", {})
    monkeypatch.setattr(loop, "_ask_git", lambda path: asked.append(path) or f"c{len(asked)}")
    monkeypatch.setattr(loop.time, "monotonic", lambda: clock[0])
    assert [loop.git_commit("/repo") for _ in range(5)] == ["c1"] * 5
    clock[0] += loop.GIT_CACHE_SECONDS + 1
    assert loop.git_commit("/repo") == "c2" and loop.git_commit("/other") == "c3"
    assert asked == ["/repo", "/repo", "/other"]
    assert loop.versions() is not loop.versions()  # callers get their own copy
    assert loop.versions() == loop.versions()


@pytest.mark.parametrize("setting, expected", [(1, 1), (0, 1)])
def test_run_threads_limit_blas_during_the_run_and_are_recorded(
    tmp_path, toy_registry, setting, expected
):
    """``run.threads`` (0: automatic, one thread for a problem this small) holds for
    every step, and meta.json records it."""
    run = _run(
        tmp_path,
        toy_registry,
        run={"threads": setting},
        loggers={"scalars": {"every": 1, "metrics": ["toy_threads"]}},
    )
    assert run.meta["threads"] == expected
    assert set(run.scalars["blas_threads"].tolist()) == {expected}
