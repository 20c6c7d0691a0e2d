"""``configs/relu_regions.py`` (Polaczyk & Cyranka, Fig. 3), shortened."""

import csv

import numpy as np

from configs.relu_regions import PAPER_OVERRIDES, TWO_LAYER_OVERRIDES
from core import config as config_module
from core.registry import Registry
from core.sweep import SweepResults, analyse_sweep, expand_sweep, plot_sweep, run_sweep

CURVES = ("rel_loss_change", "hamming_init", "corners", "grad_change")


def _load(tmp_path, *overrides):
    registry = Registry(entry_points=False)
    config, source, _ = config_module.load(
        config_module.REPO_ROOT / "configs" / "relu_regions.py",
        [f"run.runs_dir={tmp_path}", "run.display=off", *overrides],
        registry,
    )
    return config, source, registry


def test_relu_regions_declares_the_papers_setting(tmp_path):
    config, _, registry = _load(tmp_path)
    assert config["sweep"]["grid"] == {"model.width": [200, 752, 2828]}
    assert (config["data"]["n"], config["data"]["d"]) == (200, 20)
    assert config["loggers"]["scalars"]["every"] == 1
    paper, _, _ = _load(tmp_path, *PAPER_OVERRIDES)
    _, points = expand_sweep(paper, registry)
    assert len(points) == 3 * 5 and paper["stoppers"]["max_steps"]["steps"] == 24998
    # the authors' data: one data set for every width and run
    assert {point.config["data_seed"] for point in points} == {0}
    two, _, _ = _load(tmp_path, *TWO_LAYER_OVERRIDES)
    assert (two["algorithm"]["train"], two["algorithm"]["lr"]) == ("both", 0.002)


def test_shortened_region_curves(tmp_path):
    config, source, registry = _load(
        tmp_path,
        "stoppers.max_steps.steps=60",
        "sweep.seeds=2",
        "sweep.grid={'model.width': [20, 80]}",
    )
    path = run_sweep(config, source, registry, jobs=0)
    results = SweepResults(path, registry=registry)
    runs = [run for _, run in results.runs()]
    assert len(runs) == 4
    for run in runs:
        s = run.scalars
        assert list(s["step"]) == list(range(61))
        loss, h_init, h_prev = s["loss"], s["hamming_init"], s["hamming_prev"]
        np.testing.assert_allclose(
            s["rel_loss_change"][1:], np.abs(np.diff(loss)) / loss[:-1], rtol=1e-12
        )
        assert h_init[0] == 0 and h_prev[1] == h_init[1]
        # the Hamming distance is a metric: |d(P_t, P_0) - d(P_{t-1}, P_0)| <= d(P_t, P_{t-1})
        assert np.all(np.abs(np.diff(h_init)) <= h_prev[1:])
        visited = s["patterns_visited"]
        assert visited[0] == 1 and np.all(np.diff(visited) >= 0)
        assert np.all(np.diff(visited)[h_prev[1:] == 0] == 0)  # no flip, no new pattern
        assert np.all(np.isfinite(s["grad_change"][1:])) and np.all(s["grad_change"][1:] >= 0)
    analyse_sweep(results, registry)
    with open(path / "curves.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert set(CURVES) <= {row["key"] for row in rows}
    # plain numbers a spreadsheet reads (numpy's repr would write "np.float64(...)")
    assert all(float(row["mean"]) == float(row["mean"]) or row["mean"] == "nan" for row in rows)
    figures = plot_sweep(path, registry=registry)
    assert {f"sweep_curves_{key}" for key in CURVES} <= set(figures)
