"""Metric plugins: configured parameters reach them, and they agree with the indicators.

Runs train ``toy_sgd`` on ``tiny_data`` (tests/tiny_runs.py) through the real loop
with the ``scalars`` logger computing metrics at every step; snapshots are taken every
10 steps, so the trace and the post-hoc indicators see the same networks.
"""

import math
from types import SimpleNamespace

import numpy as np
import pytest
from tiny_runs import registry

import core.registry
from core import model
from core.analysis import compute_indicators, saved_problem
from core.components import LoopContext, Metric
from core.config import resolve
from core.errors import ConfigError, PluginError
from core.hookspecs import hookimpl
from core.loop import start_run
from core.registry import Registry
from plugins.loggers import Scalars, chosen_plugins

ALL_METRICS = ["distance_from_init", "n_patterns", "test_loss", "neuron_norms"]


@pytest.fixture(scope="module")
def reg():
    return registry()


def tiny_run(runs_dir, reg, metric_config, steps=30, test=True):
    """A run whose scalars logger computes ``metric_config`` (list or dict) every step."""
    config = {
        "experiment": "metrics",
        "seed": 2,
        "model": {"width": 8},
        "data": {"name": "tiny_data", "n": 12, "dim": 2, "bias": True, "test": test},
        "init": {"name": "tiny_init"},
        "algorithm": {"name": "toy_sgd", "lr": 0.05, "batch": 12},
        "stoppers": {"max_steps": {"steps": steps}},
        "loggers": {"scalars": {"every": 1, "metrics": metric_config}, "snapshots": {"every": 10}},
        "savers": {"periodic": {"every_seconds": 0.0}},
        "run": {"display": "off"},
    }
    return start_run(resolve(config, reg), "", reg, runs_dir=runs_dir)


def trace_at_snapshots(run, key):
    """The trace's ``key`` at each snapshot step."""
    at = dict(zip(run.scalars["step"], run.scalars[key]))
    return np.array([at[s] for s in run.snapshots.steps])


def test_configured_parameters_reach_the_metrics(tmp_path, reg):
    run = tiny_run(
        tmp_path, reg, {"n_patterns": {"data": "test"}, "distance_from_init": {"relative": True}}
    )
    assert run.config["loggers"]["scalars"]["metrics"] == {
        "n_patterns": {"data": "test"},
        "distance_from_init": {"relative": True},
    }
    assert "n_patterns" not in run.scalars and "n_patterns_test" in run.scalars
    X_test, W0, a0 = run.problem["X_test"], run.problem["W0"], run.problem["a0"]
    snaps = run.snapshots
    for i, step in enumerate(snaps.steps):
        W, a = snaps["W"][i], snaps["a"][i]
        columns = {
            tuple(X_test[j] @ W[:, r] > 0 for j in range(len(X_test))) for r in range(W.shape[1])
        }
        row = np.flatnonzero(run.scalars["step"] == step)[0]
        assert run.scalars["n_patterns_test"][row] == len(columns)
        d, m = W.shape
        dW = math.sqrt(sum((W[p, r] - W0[p, r]) ** 2 for p in range(d) for r in range(m)))
        size = math.sqrt(sum(W0[p, r] ** 2 for p in range(d) for r in range(m)))
        assert run.scalars["dist_W"][row] == pytest.approx(dW / size, rel=1e-12)
        assert run.scalars["dist_a"][row] == pytest.approx(
            math.dist(a, a0) / math.dist(a0, 0 * a0), rel=1e-12
        )
    assert run.scalars["dist_W"][0] == 0.0 and run.scalars["dist_W"][-1] > 0


def test_a_list_of_names_gives_each_metric_its_defaults(tmp_path, reg):
    run = tiny_run(tmp_path, reg, ["n_patterns", "distance_from_init"])
    assert run.config["loggers"]["scalars"]["metrics"] == {
        "n_patterns": {"data": "train"},
        "distance_from_init": {"relative": False},
    }
    X, W = run.problem["X"], run.snapshots["W"]
    expected = [model.n_distinct_patterns(X, W[i]) for i in range(len(W))]
    np.testing.assert_array_equal(trace_at_snapshots(run, "n_patterns"), expected)
    final = run.snapshots.at(-1)
    assert run.scalars["dist_W"][-1] == np.linalg.norm(final["W"] - run.problem["W0"])


def test_metric_and_indicator_of_one_quantity_give_the_same_numbers(tmp_path, reg):
    run = tiny_run(tmp_path, reg, ALL_METRICS)
    _, columns = compute_indicators(run, reg)
    pairs = {
        "distance_from_init": ["dist_W", "dist_a", "dist_W_max"],
        "neuron_norms": ["neuron_norm_mean", "neuron_norm_max", "neuron_norm_sum"],
        "patterns": ["n_patterns"],
        "loss": ["test_loss"],
    }
    for indicator, keys in pairs.items():
        for key in keys:
            np.testing.assert_array_equal(
                trace_at_snapshots(run, key), columns[f"{indicator}.{key}"], err_msg=key
            )
    # the indicator's recomputed training loss is the loss the loop logged
    np.testing.assert_array_equal(trace_at_snapshots(run, "loss"), columns["loss.train_loss"])
    assert len(set(trace_at_snapshots(run, "dist_W"))) == len(run.snapshots)  # it moves


def test_each_metric_on_a_network_equals_the_indicator_on_the_same_network(tmp_path, reg):
    """Directly, without the loop: one network, the saved problem, both plugin kinds."""
    run = tiny_run(tmp_path, reg, [], steps=20)
    problem = saved_problem(run)
    W, a = run.snapshots["W"][-1], run.snapshots["a"][-1]
    algorithm = SimpleNamespace(state=lambda: {"W": W.copy(), "a": a.copy()})
    for metric_name, indicator_name in (
        ("distance_from_init", "distance_from_init"),
        ("neuron_norms", "neuron_norms"),
        ("n_patterns", "patterns"),
    ):
        live = reg.build("metric", metric_name).compute(algorithm, problem)
        post = reg.build("indicator", indicator_name).per_snapshot(run, W, a)
        assert live == post and live, metric_name
    live = reg.build("metric", "test_loss").compute(algorithm, problem)
    assert live["test_loss"] == reg.build("indicator", "loss").per_snapshot(run, W, a)["test_loss"]


def test_test_loss_is_nan_without_a_test_set(tmp_path, reg):
    run = tiny_run(tmp_path, reg, ["test_loss"], steps=3, test=False)
    assert np.isnan(run.scalars["test_loss"]).all() and len(run.scalars["test_loss"]) == 4


# -- the scalars logger built directly (no resolver) ---------------------------------
class ListTrace:
    def __init__(self):
        self.rows = []

    def append(self, stream, row):
        self.rows.append((stream, row))


def context(problem, W, a, registry=None):
    algorithm = SimpleNamespace(state=lambda: {"W": W, "a": a}, scalars=lambda: {})
    return LoopContext(
        step=0,
        elapsed=0.0,
        loss=1.0,
        algorithm=algorithm,
        problem=problem,
        trace=ListTrace(),
        registry=registry,
    )


@pytest.fixture
def net(tmp_path, reg):
    run = tiny_run(tmp_path, reg, [], steps=10)
    return saved_problem(run), run.snapshots["W"][-1], run.snapshots["a"][-1]


@pytest.mark.parametrize(
    "chosen",
    [["n_patterns"], {"n_patterns": {}}, {"n_patterns": None}, {"n_patterns": {"data": "test"}}],
)
def test_scalars_setup_takes_names_or_name_to_parameters(net, reg, chosen):
    problem, W, a = net
    logger = Scalars(every=1, per_decade=0, metrics=chosen)
    ctx = context(problem, W, a, reg)
    logger.setup(ctx)
    logger.observe(ctx)
    ((stream, row),) = ctx.trace.rows
    data = (
        (chosen.get("n_patterns") or {}).get("data", "train")
        if isinstance(chosen, dict)
        else "train"
    )
    X = problem.X if data == "train" else problem.X_test
    key = "n_patterns" if data == "train" else "n_patterns_test"
    assert stream == "scalars" and row[key] == model.n_distinct_patterns(X, W)


def test_scalars_setup_falls_back_to_the_process_registry(net, reg, monkeypatch):
    monkeypatch.setattr(core.registry, "_REGISTRIES", {(): reg})
    monkeypatch.delenv("RELULAB_PLUGINS", raising=False)
    problem, W, a = net
    logger = Scalars(every=1, per_decade=0, metrics={"distance_from_init": {"relative": True}})
    ctx = context(problem, W, a, registry=None)
    logger.setup(ctx)
    logger.observe(ctx)
    row = ctx.trace.rows[0][1]
    assert row["dist_W"] == pytest.approx(
        np.linalg.norm(W - problem.W0) / np.linalg.norm(problem.W0), rel=1e-12
    )


def test_a_bad_metric_parameter_names_the_key(tmp_path, net, reg):
    problem, W, a = net
    logger = Scalars(every=1, per_decade=0, metrics={"n_patterns": {"data": "valid"}})
    with pytest.raises(
        ConfigError,
        match=r"loggers\.scalars\.metrics\.n_patterns\.data must be "
        r"one of \{'train', 'test'\}",
    ):
        logger.setup(context(problem, W, a, reg))
    unknown = r"unknown key 'dta' in loggers\.scalars\.metrics\.n_patterns; valid keys: data"
    with pytest.raises(ConfigError, match=unknown + "; did you mean 'data'"):
        tiny_run(tmp_path, reg, {"n_patterns": {"dta": "test"}})
    with pytest.raises(PluginError, match="unknown metric 'n_pattern'.*did you mean 'n_patterns'"):
        tiny_run(tmp_path, reg, ["n_pattern"])


class LossShadow(Metric):
    """Logs a key the loop already logs."""

    name = "loss_shadow"

    def compute(self, algorithm, problem):
        return {"loss": 0.0}


class Plugin:
    @hookimpl
    def relulab_metrics():
        return [LossShadow]


def test_a_metric_key_the_row_already_holds_is_an_error(net):
    problem, W, a = net
    reg = Registry(
        builtins=["plugins.metrics"], entry_points=False, extra_plugins=[(Plugin, "test")]
    )
    logger = Scalars(every=1, per_decade=0, metrics=["loss_shadow"])
    ctx = context(problem, W, a, reg)
    logger.setup(ctx)
    with pytest.raises(PluginError, match="metric 'loss_shadow' logs 'loss'"):
        logger.observe(ctx)


def test_chosen_plugins_gives_fresh_parameter_dicts():
    chosen = chosen_plugins(["a", "b"])
    assert chosen == {"a": {}, "b": {}} and chosen["a"] is not chosen["b"]
    assert chosen_plugins({"a": True, "b": {"x": 1}}) == {"a": {}, "b": {"x": 1}}
