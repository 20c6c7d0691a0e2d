"""The shipped config ``configs/convex_sinus.py`` resolves and reaches its documented optimum."""

import numpy as np
import pytest

from core import config as config_module
from core.loop import start_run
from core.registry import Registry

pytest.importorskip("cvxpy")


def test_convex_sinus_solves_to_the_documented_optimum(tmp_path):
    registry = Registry(entry_points=False)
    overrides = [f"run.runs_dir={tmp_path}", "run.display=off"]
    config, source, _ = config_module.load(
        config_module.REPO_ROOT / "configs" / "convex_sinus.py", overrides, registry
    )
    assert config["algorithm"]["name"] == "convex" and config["algorithm"]["beta"] == 1e-2
    run = start_run(config, source, registry)
    assert run.meta["status"] == "finished" and run.meta["reason"] == "solved"
    s = run.scalars
    assert list(s["step"]) == [0, 1]
    # the numbers the config's docstring states
    assert s["convex_objective"][1] == pytest.approx(0.326691, abs=1e-6)
    assert s["nonconvex_objective"][1] == pytest.approx(s["convex_objective"][1], rel=1e-9)
    assert s["loss"][1] == pytest.approx(0.1679, abs=1e-4)
    assert s["n_neurons"][1] == 10 and s["n_patterns"][1] == 39 and s["n_groups"][1] == 78
    assert s["solver_duality_gap"][1] <= 1e-9
    W, a = run.snapshots["W"][-1], run.snapshots["a"][-1]
    assert W.shape == (2, 100)
    assert s["loss"][1] + 0.5e-2 * (np.sum(W * W) + a @ a) == pytest.approx(
        s["convex_objective"][1], rel=1e-9
    )
