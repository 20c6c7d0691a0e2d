"""A sliced-Wasserstein proximal-point run killed with ``kill -9`` and resumed ends
exactly where an uninterrupted run does: the random directions are part of the state."""

import subprocess
import sys

import numpy as np
import pytest
from conftest import wait_for_steps

from core.config import load
from core.loop import resume_run, start_run
from core.registry import Registry
from core.store import load_run

pytest.importorskip("torch")
pytest.importorskip("ot")

ROOT = __import__("pathlib").Path(__file__).resolve().parents[3]
STEPS = 60
OVERRIDES = [
    f"stoppers.max_steps.steps={STEPS}",
    "model.width=30",
    "algorithm.inner_steps=20",
    "savers.periodic={'every_seconds': 0.0, 'every_steps': 3}",
    "run.display=off",
]


def test_sliced_proxpoint_resumes_bitwise_after_kill_9(tmp_path):
    registry = Registry(entry_points=False)
    config_file = ROOT / "configs" / "prox_sliced.py"
    config, source, _ = load(
        config_file, OVERRIDES + [f"run.runs_dir={tmp_path / 'ref'}"], registry
    )
    reference = start_run(config, source, registry).final_state()
    runs_dir = tmp_path / "killed"
    proc = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "runner.py"),
            str(config_file),
            "--runs-dir",
            str(runs_dir),
            *OVERRIDES,
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    run_dir = wait_for_steps(runs_dir, proc, min_steps=10)
    proc.kill()
    proc.wait()
    killed = load_run(run_dir)
    assert killed.meta["status"] == "crashed" and killed.meta["steps"] < STEPS
    resumed = resume_run(run_dir, registry)
    assert resumed.meta["status"] == "finished" and resumed.meta["steps"] == STEPS
    np.testing.assert_array_equal(resumed.scalars["step"], np.arange(STEPS + 1))
    for key in ("W", "a"):
        np.testing.assert_array_equal(resumed.final_state()[key], reference[key])
