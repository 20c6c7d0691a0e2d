"""postprocess.py: compute_indicators, indicators.csv / .json, --json and errors."""

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT
from tiny_runs import make_run, registry

import core.registry
import postprocess
from plugins import indicators


@pytest.fixture(autouse=True)
def only_builtin_postprocessing(monkeypatch):
    """In-process CLIs see the project's plots and indicators, not other installed ones."""
    monkeypatch.setattr(core.registry, "_REGISTRIES", {(): registry()})


def read_csv(path):
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    return rows[0], np.array(rows[1:], dtype=float).reshape(-1, len(rows[0]))


def test_compute_indicators_collects_prefixed_summary_and_per_snapshot_columns(tmp_path):
    run = make_run(tmp_path)
    summary, columns = postprocess.compute_indicators(run, registry())
    np.testing.assert_array_equal(columns["step"], run.snapshots.steps)
    assert all(len(v) == len(run.snapshots) for v in columns.values())
    assert summary["loss.status"] == "finished"
    assert summary["patterns.n_distinct"] == columns["patterns.n_distinct"][-1]
    W, a = run.snapshots["W"], run.snapshots["a"]
    for i in range(len(run.snapshots)):
        expected = indicators.ActivationPoints().per_snapshot(run, W[i], a[i])["n_inside"]
        assert columns["activation_points.n_inside"][i] == expected
    run5 = make_run(tmp_path / "d5", dim=5, bias=False)
    summary5, columns5 = postprocess.compute_indicators(run5, registry())
    assert not any(k.startswith("activation_points.") for k in [*summary5, *columns5])
    assert "distance_from_init.W_fro" in columns5


def test_writes_csv_rows_equal_to_the_per_snapshot_values_and_json_summary(tmp_path, capsys):
    run = make_run(tmp_path, test=True)
    assert postprocess.main([str(run.path)]) == 0
    out = capsys.readouterr().out
    assert "patterns" in out and "indicators.csv" in out
    summary, columns = postprocess.compute_indicators(run)
    header, rows = read_csv(run.path / "indicators.csv")
    assert header == list(columns) and header[0] == "step"
    assert len(rows) == len(run.snapshots)
    for j, name in enumerate(header):
        np.testing.assert_array_equal(rows[:, j], columns[name], err_msg=name)
    saved = json.loads((run.path / "indicators.json").read_text())
    assert saved == summary


def test_json_flag_prints_the_summary_as_json(tmp_path):
    run = make_run(tmp_path)
    out = subprocess.run(
        [sys.executable, "postprocess.py", str(run.path), "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    printed = json.loads(out.stdout)
    assert printed == json.loads((run.path / "indicators.json").read_text())
    assert printed["loss.steps"] == 30 and printed["loss.reason"] == "max_steps"


def test_non_finite_values_are_null_in_json():
    assert postprocess._json_safe({"a": float("nan"), "b": float("inf"), "c": 1.0}) == {
        "a": None,
        "b": None,
        "c": 1.0,
    }


def test_missing_run_exits_2_with_one_line_and_no_traceback(tmp_path):
    out = subprocess.run(
        [sys.executable, "postprocess.py", str(tmp_path / "nope"), "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert out.stderr.startswith("error: no such run directory") and out.stderr.count("\n") == 1
    assert "Traceback" not in out.stderr and out.stdout == ""


def test_incomplete_run_is_a_user_error(tmp_path, capsys):
    run = make_run(tmp_path)
    (run.path / "problem.npz").unlink()
    assert postprocess.main([str(run.path)]) == 2
    assert capsys.readouterr().err == f"error: incomplete run {run.path}: no problem.npz\n"
