"""Sweeps: expansion and validation, pool and Dask agree, kill -9 and resume, failures."""

import csv
import json
import math
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import CORE_PLUGINS, ROOT, subprocess_env, toy_config

from core.config import apply_overrides, resolve
from core.errors import ConfigError, RunStoreError
from core.locks import FolderLock, is_locked
from core.loop import resume_run
from core.registry import Registry
from core.store import Run, load_run
from core.sweep import (
    expand_sweep,
    group_by_shape,
    is_sweep_dir,
    load_sweep,
    plot_sweep,
    read_status,
    resume_sweep,
    run_sweep,
    summarize_sweep,
    validate_spec,
)
from core.sweep._spec import cell_data_seed, config_hash

GRID = {
    "grid": {"model.width": [4, 8], "algorithm.lr": [0.01, 0.02]},
    "seeds": 3,
    "success": {"key": "final_loss", "below": 0.3},
}


def sweep_config(tmp_path, registry, sweep=GRID, steps=30, display="off", **sections):
    """A resolved toy config with a sweep; every point checkpoints every 10 steps."""
    raw = toy_config(
        tmp_path / "runs",
        stoppers={"max_steps": {"steps": steps}},
        loggers={"snapshots": {"every": 10}},
        savers={"periodic": {"every_steps": 10}},
        **sections,
    )
    raw["run"]["display"] = display
    raw["sweep"] = sweep
    return resolve(raw, registry)


@pytest.fixture
def worker_registry(monkeypatch):
    """A registry whose plugin modules (tests/toy_plugins.py) sweep workers register too.

    Workers get the modules as an argument; the environment only makes them importable.
    """
    monkeypatch.delenv("RELULAB_PLUGINS", raising=False)
    monkeypatch.setenv("PYTHONPATH", subprocess_env()["PYTHONPATH"])
    return Registry(builtins=CORE_PLUGINS, entry_points=False, plugin_modules=["toy_plugins"])


def read_csv(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


# -- the declaration -----------------------------------------------------------------
def test_expansion_order_seeds_overrides_and_hashes(tmp_path, toy_registry):
    sweep = {
        "grid": {"model.width": [4, 8]},
        "zip": {"data.n": [8, 10], "stoppers.max_steps.steps": [5, 6]},
        "seeds": 2,
    }
    config = sweep_config(tmp_path, toy_registry, sweep)
    spec, points = expand_sweep(config, toy_registry)
    assert spec["seeds"] == 2 and spec["success"] is None
    assert len(points) == 2 * 2 * 2
    assert [p.id for p in points[:2]] == ["0000", "0001"]
    cells = [(p.overrides["model.width"], p.overrides["data.n"], p.seed) for p in points]
    assert cells == [
        (4, 8, 3),
        (4, 8, 4),
        (4, 10, 3),
        (4, 10, 4),
        (8, 8, 3),
        (8, 8, 4),
        (8, 10, 3),
        (8, 10, 4),
    ]
    third = points[3].config
    assert third["model"]["width"] == 4 and third["data"]["n"] == 10
    assert third["stoppers"]["max_steps"]["steps"] == 6 and third["seed"] == 4
    assert "sweep" not in third and third["run"]["display"] == "off"
    assert len({p.hash for p in points}) == len(points)
    _, again = expand_sweep(config, toy_registry)
    assert [p.hash for p in again] == [p.hash for p in points]


@pytest.mark.parametrize("data", ["run", "cell"])
def test_a_cells_seeds_have_the_configs_resolving_each_point_gives(tmp_path, toy_registry, data):
    """A cell is resolved once and its other seeds are copies with their seed: the same
    configs (and hashes) as resolving every point's raw config, each its own copy."""
    sweep = {
        "grid": {"model.width": [4, 8]},
        "zip": {"algorithm.lr": [0.1, 0.01]},
        "seeds": 3,
        "data": data,
    }
    config = sweep_config(tmp_path, toy_registry, sweep)
    _, points = expand_sweep(config, toy_registry)
    base = {k: v for k, v in config.items() if k != "sweep"}
    for point in points:
        texts = [f"{k}={v!r}" for k, v in point.overrides.items()]
        raw = apply_overrides(base, texts + ["run.display='off'"])
        if data == "cell":
            raw["data_seed"] = cell_data_seed(raw["seed"], point.overrides)
        raw["seed"] += point.seed_index
        expected = resolve(raw, toy_registry)
        assert json.dumps(point.config) == json.dumps(expected)  # same keys, same order
        assert point.config == expected and point.hash == config_hash(expected)
    assert len({p.hash for p in points}) == len(points)
    points[1].config["model"]["width"] = -1  # the copies share nothing
    assert points[0].config["model"]["width"] == points[2].config["model"]["width"] == 4


def test_nested_keys_as_command_line_overrides_write_them_are_dotted_keys():
    spec = validate_spec({"grid": {"model": {"width": [4, 8]}, "data.n": [5]}})
    assert spec["grid"] == {"model.width": [4, 8], "data.n": [5]}


def test_zip_rows_are_positions_a_value_may_repeat_within_a_key(tmp_path, toy_registry):
    sweep = {"zip": {"algorithm.lr": [0.01, 0.01], "algorithm.momentum": [0.9, 0.5]}, "seeds": 2}
    config = sweep_config(
        tmp_path, toy_registry, sweep, steps=5, algorithm={"name": "toy_ensemble"}
    )
    _, points = expand_sweep(config, toy_registry)
    assert [(p.id, p.overrides["algorithm.momentum"], p.seed) for p in points] == [
        ("0000", 0.9, 3),
        ("0001", 0.9, 4),
        ("0002", 0.5, 3),
        ("0003", 0.5, 4),
    ]
    assert {p.config["algorithm"]["lr"] for p in points} == {0.01}
    assert len({p.hash for p in points}) == 4
    _, again = expand_sweep(config, toy_registry)
    assert [(p.id, p.run, p.hash) for p in again] == [(p.id, p.run, p.hash) for p in points]

    path = run_sweep(config, "", toy_registry, jobs=0)
    assert sorted(p.name for p in (path / "runs").iterdir()) == ["0000", "0001", "0002", "0003"]
    rows, groups = summarize_sweep(path, toy_registry, indicators=False, write=False)
    assert [r["status"] for r in rows] == ["finished"] * 4
    assert [(g["algorithm.momentum"], g["n"]) for g in groups] == [(0.9, 2), (0.5, 2)]


@pytest.mark.parametrize(
    "spec, match",
    [
        ({"gird": {}}, "unknown sweep key 'gird'.*did you mean 'grid'"),
        ({"grid": {"model.width": 4}}, "sweep.grid.model.width must be a list"),
        ({"grid": {"model.width": []}}, "at least one value"),
        ({"grid": {"model.width": [4, 4]}}, "lists 4 twice"),
        ({"grid": {"model.width": [math.nan]}}, "not a plain literal"),
        ({"zip": {"model.width": [4, 8], "data.n": [5]}}, "equal lengths.*model.width has 2"),
        (
            {"zip": {"model.width": [4, 8, 4], "data.n": [5, 6, 5]}},
            r"sweep.zip rows 0 and 2 are the same \(model.width=4, data.n=5\)",
        ),
        ({"grid": {"data.n": [5]}, "zip": {"data.n": [6]}}, "in both sweep.grid and sweep.zip"),
        ({"seeds": 0}, "sweep.seeds must be an int >= 1; got 0"),
        ({"seeds": 2.5}, "sweep.seeds must be an int >= 1"),
        ({"success": {"key": "final_loss"}}, "exactly one of 'below' or 'above'"),
        ({"success": {"key": "final_loss", "belo": 1}}, "did you mean 'below'"),
    ],
)
def test_spec_errors(spec, match):
    with pytest.raises(ConfigError, match=match):
        validate_spec(spec)


@pytest.mark.parametrize(
    "grid, match",
    [
        ({"model.widht": [4]}, r"sweep point 0 \(model.widht=4\): unknown key 'widht' in model"),
        ({"model.width": [4, -1]}, r"sweep point 3 \(model.width=-1\): model.width must be"),
        ({"algorithm.name": ["toy_sgd", "nope"]}, r"sweep point 3 .*unknown algorithm 'nope'"),
    ],
)
def test_a_bad_point_fails_the_whole_sweep_before_anything_runs(
    tmp_path, toy_registry, grid, match
):
    config = sweep_config(tmp_path, toy_registry, {"grid": grid, "seeds": 3})
    with pytest.raises(Exception, match=match):
        run_sweep(config, "", toy_registry, jobs=0)
    assert not (tmp_path / "runs").exists()


def test_group_by_shape_puts_seeds_of_a_batchable_algorithm_together(tmp_path, batchable_registry):
    registry = batchable_registry
    sweep = {"grid": {"model.width": [4, 8]}, "seeds": 3}
    _, points = expand_sweep(sweep_config(tmp_path, registry, sweep), registry)
    assert [len(g) for g in group_by_shape(points, registry)] == [1] * 6
    config = sweep_config(tmp_path, registry, sweep, algorithm={"name": "toy_batchable"})
    _, points = expand_sweep(config, registry)
    groups = group_by_shape(points, registry)
    assert [[p.index for p in g] for g in groups] == [[0, 1, 2], [3, 4, 5]]


# -- running -------------------------------------------------------------------------
def test_pool_and_dask_give_identical_summaries(tmp_path, worker_registry):
    config = sweep_config(tmp_path, worker_registry)
    pool = run_sweep(config, "# source\n", worker_registry, jobs=2)
    dask = run_sweep(config, "# source\n", worker_registry, jobs=2, dask="local")
    assert is_sweep_dir(pool) and is_sweep_dir(dask) and pool != dask
    rows_pool, groups_pool = summarize_sweep(pool, worker_registry)
    rows_dask, groups_dask = summarize_sweep(dask, worker_registry)
    assert [r["status"] for r in rows_pool] == ["finished"] * 12
    for a, b in zip(rows_pool, rows_dask):
        assert a["seed"] == b["seed"] and a["model.width"] == b["model.width"]
        assert a["final_loss"] == b["final_loss"] and a["best_loss"] == b["best_loss"]
    assert json.dumps(groups_pool) == json.dumps(groups_dask)

    # the sweep folder: spec, points, one ordinary run per point, status table
    sweep = load_sweep(pool)
    assert sweep["keys"] == ["model.width", "algorithm.lr"] and len(sweep["points"]) == 12
    assert (pool / "config.py").read_text() == "# source\n"
    assert sorted(p.name for p in (pool / "runs").iterdir()) == [p["id"] for p in sweep["points"]]
    status = read_csv(pool / "status.csv")
    assert [row["status"] for row in status] == ["finished"] * 12
    assert not is_locked(pool / "sweep.lock")

    # summary.csv holds what each run's own trace says, exactly
    summary = read_csv(pool / "summary.csv")
    for row, point in zip(summary, sweep["points"]):
        run = load_run(pool / point["run"])
        assert run.config["seed"] == point["seed"] == int(row["seed"])
        assert run.config["model"]["width"] == int(row["model.width"])
        loss = run.scalars["loss"]
        assert float(row["final_loss"]) == loss[-1]
        assert float(row["best_loss"]) == loss.min()
        assert int(row["steps"]) == run.meta["steps"] == run.scalars["step"][-1] == 30
    groups = read_csv(pool / "groups.csv")
    assert len(groups) == 4 and {g["n"] for g in groups} == {"3"}
    first = [float(r["final_loss"]) for r in summary[:3]]
    assert float(groups[0]["final_loss_mean"]) == pytest.approx(np.mean(first), rel=1e-12)
    assert float(groups[0]["final_loss_std"]) == pytest.approx(np.std(first, ddof=1))
    assert float(groups[0]["success"]) == sum(v < 0.3 for v in first) / 3

    figures = plot_sweep(pool, groups_pool, registry=worker_registry)
    assert set(figures) == {"sweep_final_loss", "sweep_success", "sweep_success_contour"}
    image = figures["sweep_success"].axes[0].images[0].get_array()
    assert image.shape == (2, 2) and image[0, 0] == groups_pool[0]["success"]


def test_a_running_dask_scheduler_by_address_gives_the_same_summary(tmp_path, worker_registry):
    distributed = pytest.importorskip("distributed")
    config = sweep_config(tmp_path, worker_registry)
    inline = run_sweep(config, "", worker_registry, jobs=0)
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
    ) as cluster:
        assert cluster.scheduler_address.startswith("tcp://")
        remote = run_sweep(config, "", worker_registry, dask=cluster.scheduler_address)
    rows_inline, groups_inline = summarize_sweep(inline, worker_registry)
    rows_remote, groups_remote = summarize_sweep(remote, worker_registry)
    assert [r["status"] for r in rows_remote] == ["finished"] * 12
    assert [(r["seed"], r["final_loss"]) for r in rows_remote] == [
        (r["seed"], r["final_loss"]) for r in rows_inline
    ]
    assert json.dumps(groups_remote) == json.dumps(groups_inline)


def test_an_unreachable_scheduler_is_a_clear_error(tmp_path, toy_registry):
    pytest.importorskip("distributed")
    config = sweep_config(tmp_path, toy_registry)
    with pytest.raises(ConfigError, match="cannot reach the Dask scheduler at tcp://127.0.0.1:9"):
        run_sweep(config, "", toy_registry, dask="tcp://127.0.0.1:9")
    assert not (tmp_path / "runs").exists()  # nothing was created


def test_a_failing_point_is_recorded_and_the_others_finish(tmp_path, worker_registry, capfd):
    sweep = {"grid": {"algorithm.raise_at": [-1, 7]}, "seeds": 2}
    config = sweep_config(tmp_path, worker_registry, sweep, display="plain")
    path = run_sweep(config, "", worker_registry, jobs=2)
    err = capfd.readouterr().err
    assert (
        "point 0002 (algorithm.raise_at=7, seed 3) failed: RuntimeError: toy failure at "
        "step 7" in err
    )
    assert "2 points failed" in err
    status = read_status(path)
    assert status["counts"] == {"finished": 2, "failed": 2}
    for row in status["points"][2:]:
        assert row["reason"] == "RuntimeError: toy failure at step 7"
    rows, groups = summarize_sweep(path, worker_registry)
    assert [r["status"] for r in rows] == ["finished", "finished", "failed", "failed"]
    assert groups[1]["n_failed"] == 2 and groups[1]["final_loss_count"] == 0

    # resuming runs failed points again from scratch, in the same folders
    resume_sweep(path, worker_registry, jobs=0)
    assert read_status(path)["counts"] == {"finished": 2, "failed": 2}
    assert sorted(p.name for p in (path / "runs").iterdir()) == ["0000", "0001", "0002", "0003"]
    run = load_run(path / "runs" / "0003")
    np.testing.assert_array_equal(run.scalars["step"], np.arange(7))


def test_a_point_that_kills_its_worker_fails_alone(tmp_path, monkeypatch):
    monkeypatch.delenv("RELULAB_PLUGINS", raising=False)
    monkeypatch.setenv("PYTHONPATH", subprocess_env()["PYTHONPATH"])
    registry = Registry(
        builtins=CORE_PLUGINS, entry_points=False, plugin_modules=["toy_plugins", "sweep_plugins"]
    )
    sweep = {"grid": {"algorithm.die_at": [-1, 15, -2]}}
    config = sweep_config(
        tmp_path, registry, sweep, steps=40, algorithm={"name": "toy_killer", "sleep": 0.002}
    )
    path = run_sweep(config, "", registry, jobs=2, batch_size=1)
    rows = read_status(path)["points"]
    assert [row["status"] for row in rows] == ["finished", "failed", "finished"]
    assert "worker process running this point died" in rows[1]["reason"]
    assert Run(path / "runs" / "0001").meta["status"] == "failed"
    for row in rows[::2]:
        np.testing.assert_array_equal(load_run(path / row["run"]).scalars["step"], np.arange(41))


def test_an_ensemble_that_kills_its_worker_before_its_first_save_fails_as_a_whole(
    tmp_path, worker_registry
):
    """Members write meta.json at their first save: killed before it, their folders
    have none, and the driver still finds them (started here) and marks them failed."""
    kill_file = tmp_path / "kill"
    kill_file.touch()
    sweep = {"grid": {"algorithm.die_at": [-1, 5]}, "seeds": 2}
    config = sweep_config(
        tmp_path,
        worker_registry,
        sweep,
        steps=40,
        algorithm={"name": "toy_ensemble", "kill_file": str(kill_file)},
    )
    path = run_sweep(config, "", worker_registry, jobs=2, batch_size=2)
    rows = read_status(path)["points"]
    assert [row["status"] for row in rows] == ["finished", "finished", "failed", "failed"]
    for row in rows[2:]:
        assert "worker process running this point died" in row["reason"]
        meta = Run(path / row["run"]).meta  # the driver's: the member never saved
        assert meta == {"run_id": row["id"], "status": "failed", "reason": row["reason"]}
    resume_sweep(path, worker_registry, jobs=2)  # the kill file is gone: they finish
    assert read_status(path)["counts"] == {"finished": 4}
    for row in rows:
        np.testing.assert_array_equal(load_run(path / row["run"]).scalars["step"], np.arange(41))


def test_an_error_outside_the_loop_is_recorded_too(tmp_path, toy_registry, monkeypatch):
    import toy_plugins

    def broken_setup(self, problem):
        raise ValueError("bad setup")

    monkeypatch.setattr(toy_plugins.ToySGD, "setup", broken_setup)
    config = sweep_config(tmp_path, toy_registry, {"seeds": 2})
    path = run_sweep(config, "", toy_registry, jobs=0)
    for row in read_status(path)["points"]:
        assert row["status"] == "failed" and row["reason"] == "ValueError: bad setup"
        assert Run(path / row["run"]).meta["status"] == "failed"


KILL_SCRIPT = """
import json, sys
from core.registry import get_registry
from core.sweep import run_sweep
run_sweep(json.load(open(sys.argv[1])), "", get_registry(), jobs=2, batch_size=2)
"""


def _wait(predicate, proc=None, timeout=60, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"sweep ended early: {proc.stderr.read().decode()}")
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _statuses(runs_dir):
    return [Run(m.parent).meta["status"] for m in runs_dir.glob("toy/*/runs/*/meta.json")]


def _locked(runs_dir):
    return any(is_locked(lock) for lock in runs_dir.glob("toy/*/runs/*/run.lock"))


def _midway(runs_dir):
    """Some points finished and one is running, past a checkpoint but far from its end."""
    metas = [Run(m.parent).meta for m in runs_dir.glob("toy/*/runs/*/meta.json")]
    finished = sum(m["status"] == "finished" for m in metas)
    return finished >= 2 and any(m["status"] == "running" and 10 <= m["steps"] <= 60 for m in metas)


@pytest.mark.parametrize("algorithm", ["toy_sgd", "toy_ensemble"])
def test_kill_9_midway_then_resume_finishes_every_point_once(tmp_path, worker_registry, algorithm):
    # toy_ensemble: the two seeds of each cell are trained together as one ensemble
    sweep = {"grid": {"model.width": [4, 8], "algorithm.lr": [0.01, 0.02]}, "seeds": 2}
    config = sweep_config(
        tmp_path, worker_registry, sweep, steps=150, algorithm={"name": algorithm, "sleep": 0.004}
    )
    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps(config))
    proc = subprocess.Popen(
        [sys.executable, "-c", KILL_SCRIPT, str(config_file)],
        cwd=ROOT,
        env=subprocess_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    runs_dir = tmp_path / "runs"
    _wait(lambda: _midway(runs_dir), proc, what="points finished and one running")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # the orphaned pool workers interrupt their point, save and exit by themselves,
    # releasing the run locks (an ensemble member's meta.json comes at its first save)
    _wait(
        lambda: "running" not in _statuses(runs_dir) and not _locked(runs_dir),
        timeout=40,
        what="orphans to exit",
    )
    statuses = _statuses(runs_dir)
    assert "interrupted" in statuses and statuses.count("finished") < 8

    path = next(runs_dir.glob("toy/*"))
    assert resume_sweep("latest", worker_registry, jobs=2, runs_dir=runs_dir) == path
    points = load_sweep(path)["points"]
    assert sorted(p.name for p in (path / "runs").iterdir()) == [p["id"] for p in points]
    resumed = 0
    for point in points:
        run = load_run(path / point["run"])
        assert run.meta["status"] == "finished"
        np.testing.assert_array_equal(run.scalars["step"], np.arange(151))
        resumed += bool(run.meta["resumes"])
    assert resumed >= 1
    assert read_status(path)["counts"] == {"finished": 8}

    # the same numbers as an uninterrupted sweep run in this process (without the sleep)
    fast = sweep_config(tmp_path, worker_registry, sweep, steps=150, algorithm={"name": algorithm})
    reference = run_sweep(fast, "", worker_registry, runs_dir=tmp_path / "reference", jobs=0)
    got, _ = summarize_sweep(path, indicators=False)
    want, _ = summarize_sweep(reference, indicators=False)
    assert [r["final_loss"] for r in got] == [r["final_loss"] for r in want]

    # resuming a finished sweep runs nothing
    stamps = [(path / p["run"] / "meta.json").stat().st_mtime_ns for p in points]
    resume_sweep(path, worker_registry, jobs=0)
    assert stamps == [(path / p["run"] / "meta.json").stat().st_mtime_ns for p in points]


def test_resume_refuses_a_changed_config_or_a_live_point(tmp_path, toy_registry):
    config = sweep_config(tmp_path, toy_registry, {"grid": {"model.width": [4, 8]}}, steps=5)
    path = run_sweep(config, "", toy_registry, jobs=0)
    with pytest.raises(RunStoreError, match="not a sweep folder"):
        resume_sweep(path / "runs", toy_registry)
    changed = sweep_config(
        tmp_path, toy_registry, {"grid": {"model.width": [4, 8]}}, steps=5, algorithm={"lr": 0.5}
    )
    with pytest.raises(ConfigError, match=r"another config \(algorithm.lr: 0.01 -> 0.5\)"):
        resume_sweep(path, toy_registry, config=changed)
    assert resume_sweep(path, toy_registry, config=config, jobs=0) == path

    resume_run(path / "runs" / "0001", toy_registry, overrides=["stoppers.max_steps.steps=9"])
    with pytest.raises(ConfigError, match=r"0001 was changed \(stoppers.max_steps.steps: 5 -> 9"):
        resume_sweep(path, toy_registry)

    edited = json.loads((path / "config.json").read_text())
    edited["model"]["scaling"] = "ntk"
    (path / "config.json").write_text(json.dumps(edited))
    with pytest.raises(ConfigError, match="no longer matches sweep.json"):
        resume_sweep(path, toy_registry)

    # a point run by another process (its run lock is held) is not touched
    other = run_sweep(config, "", toy_registry, jobs=0)
    meta_path = other / "runs" / "0000" / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta.update(status="running", pid=os.getpid())
    meta_path.write_text(json.dumps(meta))

    def stamps():
        return {
            f: f.stat().st_mtime_ns for f in other.rglob("*") if f.is_file() and f.suffix != ".lock"
        }

    before = stamps()
    with FolderLock(other / "runs" / "0000" / "run.lock", "run 0000"):
        with pytest.raises(
            RunStoreError, match=f"point 0000 .* is still running \\(pid {os.getpid()}"
        ):
            resume_sweep(other, toy_registry, jobs=0)
    assert stamps() == before


def test_one_dimensional_sweep_draws_curves_with_error_bars(tmp_path, toy_registry):
    sweep = {"zip": {"model.width": [4, 8, 16], "data.n": [8, 10, 12]}, "seeds": 2}
    path = run_sweep(
        sweep_config(tmp_path, toy_registry, sweep, steps=10), "", toy_registry, jobs=0
    )
    _, groups = summarize_sweep(path, toy_registry, write=False)
    assert not (path / "summary.csv").exists()
    figures = plot_sweep(path, groups, registry=toy_registry)
    assert set(figures) == {"sweep_final_loss"}
    line = figures["sweep_final_loss"].axes[0].lines[0]
    np.testing.assert_array_equal(line.get_ydata(), [g["final_loss_mean"] for g in groups])
