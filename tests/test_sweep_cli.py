"""Sweeps from the command line: run, postprocess, plot, resume latest."""

import csv
import subprocess
import sys

import numpy as np
from conftest import ROOT, subprocess_env, toy_config

from core.store import load_run


def _cli(script, *args):
    return subprocess.run(
        [sys.executable, str(ROOT / script), *args],
        cwd=ROOT,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_sweep_from_the_command_line(tmp_path):
    config = toy_config(tmp_path / "runs", stoppers={"max_steps": {"steps": 30}})
    config["sweep"] = {
        "grid": {"model.width": [4, 8], "algorithm.lr": [0.01, 0.02]},
        "seeds": 2,
        "success": {"key": "final_loss", "below": 10.0},
    }
    path = tmp_path / "sweep_config.py"
    path.write_text(f"config = {config!r}\n")

    out = _cli("runner.py", str(path), "--jobs", "2")
    assert out.returncode == 0, out.stderr
    sweep_dir = tmp_path / "runs" / "toy" / out.stdout.strip().splitlines()[-1].split("/")[-1]
    assert (sweep_dir / "sweep.json").is_file()

    post = _cli("postprocess.py", "latest", "--runs-dir", str(tmp_path / "runs"))
    assert post.returncode == 0, post.stderr
    with open(sweep_dir / "summary.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 8 and {r["status"] for r in rows} == {"finished"}
    for row in rows:  # the summary's number is the run's own last logged loss
        run = load_run(sweep_dir / "runs" / row["id"])
        assert float(row["final_loss"]) == run.scalars["loss"][-1]
        assert int(row["seed"]) in (3, 4)
    with open(sweep_dir / "groups.csv") as fh:
        groups = list(csv.DictReader(fh))
    assert len(groups) == 4 and all(float(g["success"]) == 1.0 for g in groups)

    plot = _cli("plot.py", str(sweep_dir))
    assert plot.returncode == 0, plot.stderr
    pngs = list((sweep_dir / "plots").glob("*.png"))
    assert pngs and all(p.read_bytes()[:4] == b"\x89PNG" for p in pngs)

    again = _cli("runner.py", "--resume", "latest", "--runs-dir", str(tmp_path / "runs"))
    assert again.returncode == 0, again.stderr
    assert len(list((sweep_dir / "runs").iterdir())) == 8  # nothing duplicated
    steps = load_run(sweep_dir / "runs" / rows[0]["id"]).scalars["step"]
    np.testing.assert_array_equal(steps, np.arange(31))


def test_dry_run_of_a_sweep_resolves_every_point_and_runs_nothing(tmp_path):
    config = toy_config(tmp_path / "runs", stoppers={"max_steps": {"steps": 5}})
    config["sweep"] = {"grid": {"model.width": [4, 8]}, "seeds": 3}
    path = tmp_path / "sweep_config.py"
    path.write_text(f"config = {config!r}\n")

    ok = _cli("runner.py", str(path), "--dry-run")
    assert ok.returncode == 0, ok.stderr
    assert "sweep: 6 points, all valid" in ok.stderr
    bad = _cli("runner.py", str(path), "sweep.grid={'model.wdth': [1]}", "--dry-run")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "unknown key 'wdth' in model" in bad.stderr and "did you mean 'width'" in bad.stderr
    assert not (tmp_path / "runs").exists()
