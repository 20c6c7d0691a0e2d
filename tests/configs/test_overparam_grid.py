"""``configs/overparam_grid.py`` (Polaczyk & Cyranka, Fig. 2), shortened."""

import csv
import math

import numpy as np

from configs.overparam_grid import PAPER_OVERRIDES, THRESHOLD
from core import config as config_module
from core.registry import Registry
from core.sweep import SweepResults, analyse_sweep, expand_sweep, plot_sweep, run_sweep


def _load(tmp_path, *overrides):
    registry = Registry(entry_points=False)
    config, source, _ = config_module.load(
        config_module.REPO_ROOT / "configs" / "overparam_grid.py",
        [f"run.runs_dir={tmp_path}", "run.display=off", *overrides],
        registry,
    )
    return config, source, registry


def test_overparam_grid_declares_the_papers_setting(tmp_path):
    config, _, registry = _load(tmp_path)
    assert THRESHOLD == 2.5e-3 * math.sqrt(200)
    assert config["sweep"]["success"] == {"key": "final_loss", "below": THRESHOLD}
    assert config["data"] == {
        **config["data"],
        "name": "uniform",
        "n": 200,
        "normalize_rows": True,
        "labels": "sign",
        "bias": False,
    }
    algorithm = config["algorithm"]
    assert (algorithm["optimizer"], algorithm["momentum"], algorithm["lr"]) == (
        "momentum",
        0.9,
        0.15,
    )
    _, points = expand_sweep(config, registry)
    assert len(points) == 5 * 5 * 2 * 3
    # the authors' data: one data set per cell, shared by its runs, fresh between cells
    data_seeds = {}
    for point in points:
        data_seeds.setdefault(tuple(point.overrides.items()), set()).add(point.config["data_seed"])
    assert len(data_seeds) == 50 and all(len(seeds) == 1 for seeds in data_seeds.values())
    assert len(set().union(*data_seeds.values())) == 50
    paper, _, _ = _load(tmp_path, *PAPER_OVERRIDES)
    spec = paper["sweep"]
    cells = len(spec["grid"]["data.d"]) * len(spec["grid"]["model.width"])
    assert cells * len(spec["zip"]["algorithm.train"]) * spec["seeds"] == 30 * 30 * 2 * 10
    assert paper["sweep"]["grid"]["data.d"] == list(range(2, 61, 2))
    assert paper["stoppers"]["max_steps"]["steps"] == 49998


def test_shortened_grid_success_corners_and_fixed_second_layer(tmp_path):
    config, source, registry = _load(
        tmp_path,
        "stoppers.max_steps.steps=200",
        "sweep.seeds=1",
        "sweep.grid={'data.d': [4, 20], 'model.width': [3, 40]}",
    )
    path = run_sweep(config, source, registry, jobs=0)
    results = SweepResults(path, registry=registry)
    runs = results.runs()
    assert len(runs) == 2 * 2 * 2
    finals = {}
    for point, run in runs:
        s, W0, a0 = run.scalars, run.problem["W0"], run.problem["a0"]
        final = run.snapshots.at(-1)
        W, a = final["W"], final["a"]
        d1 = W0.shape[1]
        # the logged corner count is |X W| < 1e-8 of the final network
        Z = run.problem["X"] @ W.astype(np.float64)
        assert s["corners"][-1] == np.count_nonzero(np.abs(Z) < 1e-8)
        if point["overrides"]["algorithm.train"] == "first":
            # BasicNet1L: the fixed layer is +-1/sqrt(d1), exactly floor(d1/2) negative
            np.testing.assert_array_equal(a, a0.astype(np.float32))
            assert np.count_nonzero(a0 < 0) == d1 // 2
            np.testing.assert_allclose(np.abs(a0), 1 / math.sqrt(d1))
        else:
            assert np.all(np.abs(a0) <= 1 / math.sqrt(d1)) and not np.array_equal(a, a0)
        key = tuple(results.values(point).values())
        finals.setdefault(key, []).append((s["loss"][-1], s["corners"][-1]))
    analyse_sweep(results, registry)
    with open(path / "corner_grid.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 8
    for row in rows:
        key = (int(row["data.d"]), int(row["model.width"]), row["algorithm.train"])
        members = [v for k, v in finals.items() if k[:3] == key][0]
        losses = [loss for loss, _ in members]
        assert float(row["success"]) == np.mean([loss < THRESHOLD for loss in losses])
        assert float(row["final_loss_mean"]) == np.mean(losses)
        assert float(row["corners_mean"]) == np.mean([c for _, c in members])
    figures = plot_sweep(path, registry=registry)
    assert any(stem.startswith("sweep_corners_algorithm.train=first") for stem in figures)
    assert any(stem.startswith("sweep_success") for stem in figures)
