"""A convex run stepping the ``first_order`` (or ``working_set``) solver, killed with
``kill -9`` and resumed, ends exactly where an uninterrupted run does: the solver's
iterate, momentum, step size and dual bound (the working set and its inner interior
point) are the checkpoint's state, and so is the solver choice."""

import numpy as np
from conftest import ROOT, kill_9_and_resume

from core.registry import Registry
from core.store import RunStore

STEPS = 150
OVERRIDES = [
    f"stoppers.max_steps.steps={STEPS}",
    "algorithm.solver=first_order",
    "algorithm.relaxation=gated",
    "savers.periodic={'every_seconds': 0.0, 'every_steps': 3}",
    "run.display=off",
]


def _killed_sinus_run(tmp_path, overrides):
    """``kill_9_and_resume`` of ``configs/convex_sinus.py``, plus the solver state of
    each checkpoint the killed run left (read when it was killed)."""
    engines = []

    def read_engine(run_dir):
        engines.append(RunStore(run_dir).read_checkpoint()["algorithm"]["solver"])

    runs = kill_9_and_resume(
        ROOT / "configs" / "convex_sinus.py",
        overrides,
        tmp_path,
        Registry(entry_points=False),
        inspect=read_engine,
    )
    return (*runs, engines)


def test_first_order_convex_run_resumes_bitwise_after_kill_9(tmp_path):
    reference, killed, resumed, engines = _killed_sinus_run(tmp_path, OVERRIDES)
    assert reference.meta["steps"] == STEPS  # not yet certified: every step is a FISTA step
    assert killed.meta["status"] == "crashed" and killed.meta["steps"] < STEPS
    # the checkpoint holds the first_order engine's state (FISTA iterate, momentum, L)
    assert {"Z", "Z_prev", "t", "L", "dual_best", "iteration"} <= set(engines[0])
    assert resumed.meta["status"] == "finished" and resumed.meta["steps"] == STEPS
    np.testing.assert_array_equal(resumed.scalars["step"], np.arange(STEPS + 1))
    for key in ("solver_objective", "solver_gap", "convex_objective"):
        np.testing.assert_array_equal(resumed.scalars[key], reference.scalars[key])
    for key in ("W", "a"):
        np.testing.assert_array_equal(resumed.final_state()[key], reference.final_state()[key])


WORKING_SET = [
    "algorithm.solver=working_set",
    "algorithm.patterns=sampled",
    "algorithm.n_patterns=100",
    "data.n=200",
    "savers.periodic={'every_seconds': 0.0, 'every_steps': 1}",
    "run.display=off",
]


def test_working_set_convex_run_resumes_bitwise_after_kill_9(tmp_path):
    reference, killed, resumed, engines = _killed_sinus_run(tmp_path, WORKING_SET)
    steps = reference.meta["steps"]
    assert reference.scalars["converged"][-1] == 1.0  # certified over all groups
    assert reference.scalars["solver_rounds"][-1] >= 1.0  # the working set grew
    assert killed.meta["status"] == "crashed" and killed.meta["steps"] < steps
    # the checkpoint holds the working set and its inner interior point's state
    assert {"ws", "rounds", "dual_best", "inner_Z", "inner_lo"} <= set(engines[0])
    assert resumed.meta["status"] == "finished" and resumed.meta["steps"] == steps
    for key in ("solver_objective", "solver_gap", "solver_working_set", "convex_objective"):
        np.testing.assert_array_equal(resumed.scalars[key], reference.scalars[key])
    for key in ("W", "a"):
        np.testing.assert_array_equal(resumed.final_state()[key], reference.final_state()[key])
