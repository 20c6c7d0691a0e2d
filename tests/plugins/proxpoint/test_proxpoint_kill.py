"""A sliced-Wasserstein proximal-point run killed with ``kill -9`` and resumed ends
exactly where an uninterrupted run does: the random directions are part of the state."""

import numpy as np
import pytest
from conftest import ROOT, kill_9_and_resume

from core.registry import Registry

pytest.importorskip("torch")
pytest.importorskip("ot")

STEPS = 60
OVERRIDES = [
    f"stoppers.max_steps.steps={STEPS}",
    "model.width=30",
    "algorithm.inner_steps=20",
    "savers.periodic={'every_seconds': 0.0, 'every_steps': 3}",
    "run.display=off",
]


def test_sliced_proxpoint_resumes_bitwise_after_kill_9(tmp_path):
    reference, killed, resumed = kill_9_and_resume(
        ROOT / "configs" / "prox_sliced.py", OVERRIDES, tmp_path, Registry(entry_points=False)
    )
    reference = reference.final_state()
    assert killed.meta["status"] == "crashed" and killed.meta["steps"] < STEPS
    assert resumed.meta["status"] == "finished" and resumed.meta["steps"] == STEPS
    np.testing.assert_array_equal(resumed.scalars["step"], np.arange(STEPS + 1))
    for key in ("W", "a"):
        np.testing.assert_array_equal(resumed.final_state()[key], reference[key])
