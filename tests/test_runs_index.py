"""Tests of core/runs_index.py and the --list / --compare command lines."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from conftest import CORE_PLUGINS, ROOT, subprocess_env, toy_config, wait_for_steps

import plot
import postprocess
from core import runs_index
from core.config import resolve
from core.loop import start_run
from core.registry import Registry
from core.store import atomic_write_json, read_json

CONFIG = """
config = {
    "experiment": "slow", "seed": 5, "model": {"width": 8},
    "data": {"name": "toy_data"}, "init": {"name": "toy_init"},
    "algorithm": {"name": "toy_sgd", "sleep": 0.01},
    "stoppers": {"max_steps": {"steps": 100000}},
    "savers": {"periodic": {"every_seconds": 0.0, "every_steps": 2}},
    "run": {"display": "off"},
}
"""


def _run(runs_dir, registry, seed, lr, steps=40):
    config = toy_config(
        runs_dir,
        seed=seed,
        algorithm={"lr": lr},
        stoppers={"max_steps": {"steps": steps}},
    )
    return start_run(resolve(config, registry), "", registry)


@pytest.fixture(scope="module")
def three_runs(tmp_path_factory):
    """Two seeds at lr 0.05 and one at lr 0.02, in experiment ``toy``."""
    registry = Registry(builtins=CORE_PLUGINS + ["toy_plugins"], entry_points=False)
    runs_dir = tmp_path_factory.mktemp("runs")
    runs = [
        _run(runs_dir, registry, 0, 0.05),
        _run(runs_dir, registry, 1, 0.05),
        _run(runs_dir, registry, 0, 0.02),
    ]
    return runs_dir, runs


def test_killed_run_is_listed_as_crashed(tmp_path):
    config_path = tmp_path / "slow.py"
    config_path.write_text(CONFIG)
    runs_dir = tmp_path / "runs"
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "runner.py"), str(config_path), "--runs-dir", str(runs_dir)],
        cwd=ROOT,
        env=subprocess_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        run_dir = wait_for_steps(runs_dir, proc, min_steps=4)
        (live,) = runs_index.list_runs(runs_dir)
        assert live["status"] == "running" and live["id"] == run_dir.name
    finally:
        proc.kill()
        proc.wait()
    assert read_json(run_dir / "meta.json")["status"] == "running"  # as the process left it
    (entry,) = runs_index.list_runs(runs_dir)
    assert entry["status"] == "crashed" and entry["algorithm"] == "toy_sgd"
    assert entry["steps"] >= 4


def test_list_is_newest_first_with_meta_values_and_differing_keys(three_runs):
    runs_dir, runs = three_runs
    entries = runs_index.list_runs(runs_dir)
    assert [e["id"] for e in entries] == sorted((r.path.name for r in runs), reverse=True)
    by_id = {e["id"]: e for e in entries}
    for run in runs:
        entry = by_id[run.path.name]
        assert entry["status"] == "finished" and entry["steps"] == 40
        assert entry["algorithm"] == "toy_sgd"
        assert entry["final_loss"] == pytest.approx(float(run.scalars["loss"][-1]), rel=1e-12)
        assert entry["wall_time"] == run.meta["wall_time"] > 0
        assert entry["differs"] == {
            "algorithm.lr": run.config["algorithm"]["lr"],
            "seed": run.config["seed"],
        }


def test_list_json_and_experiment_filter(three_runs, capsys, tmp_path):
    runs_dir, runs = three_runs
    assert postprocess.main(["--list", "--runs-dir", str(runs_dir), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert len(listed) == 3 and all("values" not in e for e in listed)
    assert {e["differs"]["algorithm.lr"] for e in listed} == {0.05, 0.02}
    assert listed[0]["id"] == max(r.path.name for r in runs)
    assert postprocess.main(["--list", "--runs-dir", str(runs_dir), "--experiment", "toy"]) == 0
    table = capsys.readouterr().out
    assert all(r.path.name in table for r in runs) and "algorithm.lr=0.02" in table
    assert postprocess.main(["--list", "--runs-dir", str(runs_dir), "--experiment", "nope"]) == 2
    assert "no runs of experiment 'nope'" in capsys.readouterr().err


def test_old_runs_without_index_fields_read_their_config(three_runs, tmp_path):
    runs_dir, runs = three_runs

    old = tmp_path / "old" / "toy" / runs[2].path.name
    shutil.copytree(runs[2].path, old)
    meta = read_json(old / "meta.json")
    del meta["algorithm"], meta["config_values"]
    atomic_write_json(old / "meta.json", meta)
    (entry,) = runs_index.list_runs(tmp_path / "old")
    assert entry["algorithm"] == "toy_sgd"
    assert entry["values"]["algorithm.lr"] == 0.02


def test_comparison_pools_two_seeds_into_one_curve(three_runs):
    _, runs = three_runs
    keys, groups = runs_index.compare(runs)
    assert keys == ["algorithm.lr"]
    assert [g["label"] for g in groups] == ["lr=0.05", "lr=0.02"]
    assert [len(g["runs"]) for g in groups] == [2, 1]
    steps, mean, low, high, n = runs_index.group_curve(groups[0]["runs"])
    a, b = (np.asarray(r.scalars["loss"]) for r in runs[:2])
    assert n == 2 and np.array_equal(steps, np.arange(41))
    np.testing.assert_allclose(mean, (a + b) / 2)
    np.testing.assert_array_equal(low, np.minimum(a, b))
    np.testing.assert_array_equal(high, np.maximum(a, b))
    assert not np.array_equal(a, b)  # the seeds do differ
    figure = runs_index.plot_comparison(groups)
    (ax,) = figure.axes
    assert [line.get_label() for line in ax.lines] == ["lr=0.05 (mean of 2 seeds)", "lr=0.02"]
    np.testing.assert_allclose(ax.lines[0].get_ydata(), mean)
    assert len(ax.collections) == 1  # one band, for the pooled group only

    rows = runs_index.comparison_rows(groups)
    finals = [float(r.scalars["loss"][-1]) for r in runs]
    assert rows[0]["n_runs"] == 2 and rows[0]["seeds"] == [0, 1]
    assert rows[0]["final_loss_mean"] == pytest.approx(np.mean(finals[:2]))
    assert rows[0]["final_loss_std"] == pytest.approx(np.std(finals[:2]))
    assert rows[1]["final_loss_mean"] == pytest.approx(finals[2])


def test_compare_command_lines(three_runs, capsys, tmp_path):
    runs_dir, runs = three_runs
    args = ["--compare", *(str(r.path) for r in runs), "--json"]
    assert postprocess.main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["keys"] == ["algorithm.lr"]
    assert [(g["algorithm.lr"], g["n_runs"]) for g in out["groups"]] == [(0.05, 2), (0.02, 1)]
    assert postprocess.main(["--compare", "--experiment", "toy", "--runs-dir", str(runs_dir)]) == 0
    assert "0.05" in capsys.readouterr().out
    out_file = tmp_path / "cmp.png"
    assert (
        plot.main(
            [
                "--compare",
                "--experiment",
                "toy",
                "--runs-dir",
                str(runs_dir),
                "--out",
                str(out_file),
            ]
        )
        == 0
    )
    assert capsys.readouterr().out.strip() == str(out_file)
    assert out_file.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert plot.main(["--compare", str(runs[0].path), str(runs[1].path)]) == 0
    assert capsys.readouterr().out.strip() == str(runs_dir / "toy" / "plots" / "compare_loss.png")
    assert postprocess.main(["--compare", str(tmp_path)]) == 2
    assert "not a run or sweep folder" in capsys.readouterr().err


def test_index_reads_meta_only(three_runs, tmp_path):
    runs_dir, runs = three_runs
    copy = tmp_path / "copy" / "toy" / runs[0].path.name
    shutil.copytree(runs[0].path, copy)
    for name in ("config.json", "problem.npz", "checkpoint.npz"):
        (copy / name).unlink()
    shutil.rmtree(copy / "trace")
    (entry,) = runs_index.list_runs(tmp_path / "copy")
    assert entry["status"] == "finished" and entry["algorithm"] == "toy_sgd"
    assert entry["values"]["model.width"] == 16


def test_sweeps_are_listed_with_their_counts(tmp_path):
    sweep = tmp_path / "runs" / "wsweep" / "20260101T000000Z-aaaaaa"
    (sweep / "runs").mkdir(parents=True)
    atomic_write_json(sweep / "config.json", {"seed": 0, "algorithm": {"name": "gd"}})
    points = [{"index": i} for i in range(3)]
    atomic_write_json(
        sweep / "sweep.json", {"experiment": "wsweep", "keys": ["model.width"], "points": points}
    )
    atomic_write_json(sweep / "status.json", {"counts": {"finished": 2}})
    (entry,) = runs_index.list_runs(tmp_path / "runs")
    assert entry["kind"] == "sweep" and entry["algorithm"] == "gd"
    assert entry["status"] == "2 finished, 1 pending" and entry["steps"] == 3
    assert entry["differs"] == {"model.width": "swept"}
