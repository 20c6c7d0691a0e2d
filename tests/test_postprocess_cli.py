"""postprocess.py: indicators.csv / .json of a run, a sweep's tables, --json and errors.

The computations are tested in tests/core/test_analysis.py; here, what the command line
writes and prints.
"""

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT, toy_config
from tiny_runs import make_run, registry

import core.registry
import postprocess
from core.analysis import compute_indicators
from core.config import resolve
from core.sweep import run_sweep


@pytest.fixture(autouse=True)
def only_builtin_postprocessing(monkeypatch):
    """In-process CLIs see the project's plots and indicators, not other installed ones."""
    monkeypatch.setattr(core.registry, "_REGISTRIES", {(): registry()})


def read_csv(path):
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    return rows[0], np.array(rows[1:], dtype=float).reshape(-1, len(rows[0]))


def test_writes_csv_rows_equal_to_the_per_snapshot_values_and_json_summary(tmp_path, capsys):
    run = make_run(tmp_path, test=True)
    assert postprocess.main([str(run.path)]) == 0
    out = capsys.readouterr().out
    assert "patterns" in out and "indicators.csv" in out
    summary, columns = compute_indicators(run)
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


def tiny_sweep(tmp_path, seeds=2, **spec):
    """A sweep of toy runs (2 widths x ``seeds`` seeds) run in this process."""
    raw = toy_config(tmp_path / "runs", stoppers={"max_steps": {"steps": 10}})
    raw["sweep"] = {"grid": {"model.width": [3, 5]}, "seeds": seeds, **spec}
    return run_sweep(resolve(raw, registry()), "", registry(), jobs=0)


def test_a_sweep_without_success_prints_its_table_and_writes_its_csvs(tmp_path, capsys):
    path = tiny_sweep(tmp_path)
    assert postprocess.main(["latest", "--runs-dir", str(tmp_path / "runs")]) == 0
    out = capsys.readouterr().out
    (header,) = [line for line in out.splitlines() if "final_loss" in line]
    assert "success" not in header and "done" in header and "2/2" in out
    assert f"wrote {path / 'summary.csv'}" in out and f"wrote {path / 'groups.csv'}" in out
    with open(path / "groups.csv", newline="") as fh:
        groups = list(csv.DictReader(fh))
    assert [g["model.width"] for g in groups] == ["3", "5"] and "success" not in groups[0]


def test_a_sweep_with_success_has_a_success_column(tmp_path, capsys):
    path = tiny_sweep(tmp_path, success={"key": "final_loss", "below": 1e9})
    assert postprocess.main([str(path)]) == 0
    out = capsys.readouterr().out
    (header,) = [line for line in out.splitlines() if "final_loss" in line]
    assert "success" in header


def test_sweep_json_is_strict_json_with_rows_and_groups(tmp_path, capsys):
    path = tiny_sweep(tmp_path, seeds=1)
    assert postprocess.main([str(path), "--json"]) == 0
    printed = json.loads(
        capsys.readouterr().out, parse_constant=lambda c: pytest.fail(f"non-strict JSON {c}")
    )
    assert len(printed["rows"]) == 2 and len(printed["groups"]) == 2
    # the std over one seed is NaN: written as null
    assert printed["groups"][0]["final_loss_std"] is None
    assert printed["groups"][0]["final_loss_mean"] == printed["rows"][0]["final_loss"]
    assert all("values" not in row for row in printed["rows"])
    assert printed["rows"][0]["patterns.n_patterns"] >= 1
