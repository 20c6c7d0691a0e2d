"""The shipped sweep ``configs/width_sweep.py`` resolves, runs shortened, and aggregates."""

import math

import numpy as np

from core import config as config_module
from core.registry import Registry
from core.store import Run
from core.sweep import expand_sweep, run_sweep, summarize_sweep


def _load(tmp_path, *overrides):
    registry = Registry(entry_points=False)
    config, source, _ = config_module.load(
        config_module.REPO_ROOT / "configs" / "width_sweep.py",
        [f"run.runs_dir={tmp_path}", "run.display=off", *overrides],
        registry,
    )
    return config, source, registry


def test_width_sweep_declares_the_documented_grid(tmp_path):
    config, _, registry = _load(tmp_path)
    _, points = expand_sweep(config, registry)
    assert len(points) == 4 * 3 * 3
    assert config["sweep"]["success"] == {"key": "final_loss", "below": 1e-3}
    assert {p.seed for p in points} == {config["seed"] + s for s in range(3)}


def test_width_sweep_shortened_runs_and_summarises_from_the_traces(tmp_path):
    config, source, registry = _load(
        tmp_path,
        "stoppers.max_steps.steps=200",
        "sweep.seeds=2",
        "sweep.grid={'model.width': [10, 640], 'data.n': [5]}",
    )
    path = run_sweep(config, source, registry, jobs=0)
    rows, groups = summarize_sweep(path, registry)
    assert [r["status"] for r in rows] == ["finished"] * 4
    for row in rows:
        trace_loss = Run(path / f"runs/{row['id']}").scalars["loss"]
        assert row["final_loss"] == trace_loss[-1]
    by_width = {g["model.width"]: g for g in groups}
    assert set(by_width) == {10, 640}
    for group in groups:
        finals = [r["final_loss"] for r in rows if r["model.width"] == group["model.width"]]
        assert math.isclose(group["final_loss_mean"], np.mean(finals), rel_tol=1e-12)
    # 200 momentum steps: the wide network is far below the narrow one
    assert by_width[640]["final_loss_mean"] < 0.1 * by_width[10]["final_loss_mean"]
