"""``configs/du_width.py``: the NTK width sweep, shortened, against Du et al.'s theorem."""

import json
import math

import numpy as np

from configs.du_width import REPORT_OVERRIDES
from core import config as config_module
from core import quantities
from core.registry import Registry
from core.store import Run
from core.sweep import SweepResults, analyse_sweep, expand_sweep, plot_sweep, run_sweep


def _load(tmp_path, *overrides):
    registry = Registry(entry_points=False)
    config, source, _ = config_module.load(
        config_module.REPO_ROOT / "configs" / "du_width.py",
        [f"run.runs_dir={tmp_path}", "run.display=off", *overrides],
        registry,
    )
    return config, source, registry


def test_du_width_declares_the_theory_setting(tmp_path):
    config, _, registry = _load(tmp_path)
    _, points = expand_sweep(config, registry)
    assert len(points) == 5 * 3
    assert config["sweep"]["grid"] == {"model.width": [500, 1000, 2000, 4000, 8000]}
    assert config["model"]["scaling"] == "ntk" and config["model"]["loss"] == "half_sum"
    assert config["algorithm"]["train"] == "first" and config["algorithm"]["optimizer"] == "sgd"
    assert config["init"]["second_layer"] == "rademacher"
    report, _, _ = _load(tmp_path, *REPORT_OVERRIDES)
    assert report["data"]["n"] == report["data"]["d"] == 1000 and report["data"]["bias"]
    assert report["model"]["scaling"] == "standard" and report["algorithm"]["train"] == "both"


def test_loss_bound_and_one_over_sqrt_m_moves_on_a_small_case(tmp_path):
    config, source, registry = _load(
        tmp_path,
        "data.n=20",
        "data.d=10",
        "stoppers.max_steps.steps=150",
        "sweep.seeds=2",
        "sweep.grid={'model.width': [100, 400, 1600]}",
    )
    path = run_sweep(config, source, registry, jobs=0)
    results = SweepResults(path, registry=registry)
    runs = [run for _, run in results.runs()]
    assert len(runs) == 6
    for run in runs:
        X, s = run.problem["X"], run.scalars
        lam0 = quantities.lambda_0(X)
        assert lam0 > 0 and s["gram_lambda_0"][0] == lam0
        # Du et al., Theorem 3.1 in gradient-flow time eta t: L(t) <= L(0) exp(-lambda_0 eta t)
        bound = s["loss"][0] * np.exp(-lam0 * 0.1 * s["step"])
        assert np.all(s["loss"] <= bound)
    analyse_sweep(results, registry)
    summary = json.loads((path / "ntk_width.json").read_text())
    # max_r ||w_r(T) - w_r(0)|| ~ 1/sqrt(m) (a slowly growing max over m neurons on top)
    assert -0.65 < summary["shift_slope"] < -0.35
    assert math.isclose(
        summary["lambda_0_min"], min(quantities.lambda_0(r.problem["X"]) for r in runs)
    )
    figures = plot_sweep(path, registry=registry)
    assert {"ntk_loss", "ntk_shift", "ntk_patterns"} <= set(figures)


def test_report_variant_explodes_and_every_neuron_dies(tmp_path):
    small = [o.replace("'n': 1000, 'd': 1000", "'n': 50, 'd': 50") for o in REPORT_OVERRIDES]
    config, source, registry = _load(
        tmp_path,
        *small,
        "stoppers.max_steps.steps=8",
        "sweep.seeds=1",
        "sweep.grid={'model.width': [500]}",
    )
    path = run_sweep(config, source, registry, jobs=0)
    ((_, run),) = SweepResults(path, registry=registry).runs()
    s = run.scalars
    assert s["loss"].max() > 1e3 * s["loss"][0]  # lr 0.1 on the unscaled network explodes
    dead = np.flatnonzero(s["live_neurons"] == 0)
    assert len(dead) and dead[-1] == len(s["loss"]) - 1
    # with every ReLU dead on every input the network outputs 0: the loss is mean(y^2)
    Y = Run(run.path).problem["Y"]
    np.testing.assert_allclose(s["loss"][dead], np.mean(Y**2), rtol=1e-6)  # float32 run
