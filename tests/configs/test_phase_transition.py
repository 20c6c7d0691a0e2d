"""The shipped sweep ``configs/phase_transition.py`` resolves, runs shortened, and aggregates."""

import numpy as np
import pytest

pytest.importorskip("cvxpy")

from core import config as config_module  # noqa: E402
from core.registry import Registry  # noqa: E402
from core.store import Run  # noqa: E402
from core.sweep import expand_sweep, run_sweep, summarize_sweep  # noqa: E402


def _registry():
    return Registry(entry_points=False, plugin_modules=())


def _load(tmp_path, *overrides):
    registry = _registry()
    config, source, _ = config_module.load(
        config_module.REPO_ROOT / "configs" / "phase_transition.py",
        [f"run.runs_dir={tmp_path}", "run.display=off", *overrides],
        registry,
    )
    return config, source, registry


def test_phase_transition_declares_the_documented_grid(tmp_path):
    config, _, registry = _load(tmp_path)
    _, points = expand_sweep(config, registry)
    assert len(points) == 12 * 6 * 5
    assert config["sweep"]["success"] == {"key": "min_norm.recovered_strict", "above": 0.5}
    assert config["data"]["planted"] == "smallest_singular"
    assert {p.seed for p in points} == {config["seed"] + s for s in range(5)}


def test_phase_transition_shortened_recovers_above_the_transition_only(tmp_path):
    config, source, registry = _load(
        tmp_path, "sweep.seeds=2", "sweep.grid={'data.n': [10, 80], 'data.d': [10]}"
    )
    path = run_sweep(config, source, registry, jobs=0)
    rows, groups = summarize_sweep(path, registry)
    assert [r["status"] for r in rows] == ["finished"] * 4
    for row in rows:
        scalars = Run(path / f"runs/{row['id']}").scalars
        assert row["min_norm.recovered_strict"] == scalars["recovered_strict"][-1]
        assert row["min_norm.interpolation_error"] < 1e-7
        # the certified interior point answered (no fallback), to a gap of 1e-8
        assert row["min_norm.solver_code"] == 0 and 0 <= row["min_norm.relative_gap"] <= 1e-8
        if row["data.n"] == 80:  # recovered: the planted function on fresh points
            assert row["min_norm.test_distance"] < 1e-6
            assert row["min_norm.planted_excess_max"] <= 1e-8
        else:  # n = d: the interpolant is provably shorter than w (by more than the gap)
            assert row["min_norm.planted_excess_min"] > 1e-6
    by_n = {g["data.n"]: g for g in groups}
    assert by_n[80]["success"] == 1.0 and by_n[80]["min_norm.recovered_merged_mean"] == 1.0
    assert by_n[10]["success"] == 0.0  # n = d: the min-norm interpolant is not w
    assert by_n[10]["min_norm.all_ones_attainable_mean"] == 1.0  # n <= d: always
    # the two trials of a cell have their own data (seeds), the cells their own sizes
    w = [Run(path / f"runs/{r['id']}").problem["extra.w_star"] for r in rows[:2]]
    assert not np.allclose(w[0], w[1])
