"""A convex run stepping the ``first_order`` solver, killed with ``kill -9`` and resumed,
ends exactly where an uninterrupted run does: the solver's iterate, momentum, step
size and dual bound are the checkpoint's state, and so is the solver choice."""

import subprocess
import sys

import numpy as np
from conftest import wait_for_steps

from core.config import load
from core.loop import resume_run, start_run
from core.registry import Registry
from core.store import RunStore, load_run

ROOT = __import__("pathlib").Path(__file__).resolve().parents[3]
STEPS = 150
OVERRIDES = [
    f"stoppers.max_steps.steps={STEPS}",
    "algorithm.solver=first_order",
    "algorithm.relaxation=gated",
    "savers.periodic={'every_seconds': 0.0, 'every_steps': 3}",
    "run.display=off",
]


def test_first_order_convex_run_resumes_bitwise_after_kill_9(tmp_path):
    registry = Registry(entry_points=False)
    config_file = ROOT / "configs" / "convex_sinus.py"
    config, source, _ = load(
        config_file, OVERRIDES + [f"run.runs_dir={tmp_path / 'ref'}"], registry
    )
    reference = start_run(config, source, registry)
    assert reference.meta["steps"] == STEPS  # not yet certified: every step is a FISTA step
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
    # the checkpoint holds the first_order engine's state (FISTA iterate, momentum, L)
    engine = RunStore(run_dir).read_checkpoint()["algorithm"]["solver"]
    assert {"Z", "Z_prev", "t", "L", "dual_best", "iteration"} <= set(engine)
    resumed = resume_run(run_dir, registry)
    assert resumed.meta["status"] == "finished" and resumed.meta["steps"] == STEPS
    np.testing.assert_array_equal(resumed.scalars["step"], np.arange(STEPS + 1))
    for key in ("solver_objective", "solver_gap", "convex_objective"):
        np.testing.assert_array_equal(resumed.scalars[key], reference.scalars[key])
    for key in ("W", "a"):
        np.testing.assert_array_equal(resumed.final_state()[key], reference.final_state()[key])
