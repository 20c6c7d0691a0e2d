"""The ``jko`` algorithm through the run loop, resume, the flagship config and the plot."""

from pathlib import Path

import numpy as np
import pytest

from core.config import load, resolve
from core.errors import ConfigError, PluginError
from core.loop import resume_run, start_run
from core.registry import Registry

ROOT = Path(__file__).resolve().parents[3]
MODULES = [
    "plugins.stoppers",
    "plugins.loggers",
    "plugins.savers",
    "plugins.metrics",
    "plugins.data",
    "plugins.inits",
    "plugins.jko",
]


@pytest.fixture(scope="module")
def registry():
    return Registry(builtins=MODULES, entry_points=False)


def _config(runs_dir, steps=6, **algorithm):
    return {
        "experiment": "jko_test",
        "seed": 1,
        "data": {"name": "sinus", "n": 10, "bias": True},
        "init": {"name": "grid", "per_axis": 8, "extent": 2.0, "signs": "both", "mass": 1.0},
        "algorithm": {"name": "jko", "tau": 0.3, "gamma": 0.05, **algorithm},
        "stoppers": {"max_steps": {"steps": steps}},
        "loggers": {"scalars": {"every": 1}, "snapshots": {"every": 2}, "records": {"every": 1}},
        "savers": {"periodic": {"every_seconds": 0.0, "every_steps": 1}},
        "run": {"runs_dir": str(runs_dir), "display": "off"},
    }


def test_hooks_register_algorithm_proxes_and_plot(registry):
    assert "jko" in registry.names("algorithm")
    assert {"scipy", "cvxpy", "torch"} <= set(registry.names("prox"))
    assert {"jko_mass", "jko_convergence"} <= set(registry.names("plot"))
    assert not [f for f in registry.failures if "jko" in f[0]]


def test_a_short_run_finishes_and_records_everything(registry, tmp_path):
    run = start_run(resolve(_config(tmp_path), registry), "", registry)
    assert run.status == "finished" and run.meta["steps"] == 6
    scalars = run.scalars
    assert list(scalars["step"]) == list(range(7))
    assert np.all(np.diff(scalars["loss"]) < 0)
    assert np.all(scalars["inner_iters"][1:] >= 1)
    for key in ("mass", "mass_pos", "mass_neg", "violation", "energy"):
        assert np.all(np.isfinite(scalars[key][1:])), key
    assert np.allclose(scalars["mass_pos"], 64.0, rtol=1e-2)
    records = run.records
    assert set(np.unique(records["step"])) == set(range(1, 7))
    assert {"inner", "change", "grad_norm", "F", "mass"} <= set(records)
    snaps = run.snapshots
    assert list(snaps.steps) == [0, 2, 4, 6]
    assert snaps["p"].shape == (4, 128) and snaps["W"].shape == (4, 2, 128)


def test_loop_resume_equals_uninterrupted_run(registry, tmp_path):
    straight = start_run(resolve(_config(tmp_path / "a", steps=6), registry), "", registry)
    cut = start_run(resolve(_config(tmp_path / "b", steps=3), registry), "", registry)
    resumed = resume_run(cut.path, registry, overrides=["stoppers.max_steps.steps=6"])
    assert resumed.meta["steps"] == 6
    assert np.array_equal(resumed.snapshots["p"][-1], straight.snapshots["p"][-1])
    assert np.array_equal(resumed.scalars["loss"], straight.scalars["loss"])


def test_config_errors_name_the_key(registry, tmp_path):
    with pytest.raises(PluginError, match="unknown prox 'lbfgs' in algorithm.proxf"):
        resolve(_config(tmp_path, proxf="lbfgs"), registry)
    with pytest.raises(ConfigError, match="kernel must be one of"):
        resolve(_config(tmp_path, kernel="fft"), registry)
    with pytest.raises(ConfigError, match="unknown key 'formulaton'"):  # before any run
        resolve(_config(tmp_path, prox_options={"formulaton": "dual"}), registry)


def test_flagship_config_resolves_and_runs(registry, tmp_path):
    path = ROOT / "configs" / "jko_sinkhorn.py"
    config, _, _ = load(
        path,
        ["stoppers.max_steps.steps=2", f"run.runs_dir={tmp_path}", "run.display=off"],
        registry=registry,
    )
    assert config["algorithm"]["name"] == "jko" and config["algorithm"]["proxf"] == "scipy"
    assert config["init"]["per_axis"] >= 30
    run = start_run(config, path.read_text(), registry)
    assert run.status == "finished"
    assert run.scalars["loss"][-1] < run.scalars["loss"][0]


def test_mass_heat_maps(registry, tmp_path):
    pytest.importorskip("matplotlib")
    from plugins.jko import JKOMass

    run = start_run(resolve(_config(tmp_path), registry), "", registry)
    plot = JKOMass(columns=3)
    assert plot.applies(run)
    figures = plot.draw(run)
    assert list(figures) == ["jko_mass"]
    assert len(figures["jko_mass"].axes) == 2 * 3 + 2  # heat maps and two colour bars


def test_scattered_positions_use_the_dense_kernel_and_get_no_heat_map(registry, tmp_path):
    pytest.importorskip("matplotlib")
    from plugins.jko import JKOMass

    config = _config(tmp_path, steps=2)
    config["init"] = {"name": "normal"}
    config["model"] = {"width": 40}
    run = start_run(resolve(config, registry), "", registry)
    assert run.status == "finished"
    assert run.snapshots["p"].shape == (2, 40)
    assert not JKOMass().applies(run)


def test_convergence_plot_shows_inner_iterations_and_violation(registry, tmp_path):
    pytest.importorskip("matplotlib")
    from plugins.jko import JKOConvergence

    run = start_run(resolve(_config(tmp_path), registry), "", registry)
    assert np.all(run.scalars["violation"][1:] < 1e-9)  # converged steps by default
    plot = JKOConvergence()
    assert plot.applies(run)
    figures = plot.draw(run)
    assert list(figures) == ["jko_convergence"]
    axes = figures["jko_convergence"].axes
    assert [ax.get_ylabel() for ax in axes] == ["loss", "inner iterations", "marginal violation"]
    assert len(axes[1].lines[0].get_xdata()) == 6  # steps 1..6
