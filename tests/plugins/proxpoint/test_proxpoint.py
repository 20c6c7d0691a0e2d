"""The ``proxpoint`` algorithm: its mathematics, its rules, resume, bad input, the plot."""

import math

import numpy as np
import pytest

from core import model
from core.components import Distance, Problem
from core.config import resolve
from core.errors import ConfigError, PluginError
from core.hookspecs import hookimpl
from core.loop import resume_run, start_run
from core.params import Param, validate_params
from core.registry import Registry
from core.store import load_state, save_state

torch = pytest.importorskip("torch")

from plugins.proxpoint import InnerLoop, ProximalPoint  # noqa: E402

MODULES = [
    "plugins.stoppers",
    "plugins.loggers",
    "plugins.savers",
    "plugins.metrics",
    "plugins.data",
    "plugins.inits",
    "plugins.proxpoint",
    "plugins.optimizers",
]


class RandomProjections(Distance):
    """Mean of (theta . (w_r - w'_r))^2 over neurons, ``count`` new random directions a call."""

    name = "test_projections"
    params = (Param("count", int, 3, "directions per call", low=1),)

    def setup(self, problem, rng):
        self.rng, self.calls = rng, 0

    def value(self, W, W_prev, a):
        theta = self.rng.normal(size=(W.shape[0], self.count))
        theta = torch.as_tensor(theta / np.linalg.norm(theta, axis=0), dtype=W.dtype)
        self.calls += 1
        return torch.mean(((W - W_prev).T @ theta) ** 2)

    def scalars(self):
        return {"calls": self.calls}

    def state_dict(self):
        return {"rng": self.rng.bit_generator.state, "calls": self.calls}

    def load_state_dict(self, state):
        self.rng.bit_generator.state = state["rng"]
        self.calls = int(state["calls"])


class Exploding(Distance):
    """The Frobenius distance, then NaN from the ``after``-th call on."""

    name = "test_exploding"
    params = (Param("after", int, 5, "calls before NaN", low=0),)

    def setup(self, problem, rng):
        self.calls = 0

    def value(self, W, W_prev, a):
        self.calls += 1
        value = torch.sum((W - W_prev) ** 2)
        return value * math.nan if self.calls > self.after else value


class _TestDistances:
    @hookimpl
    def relulab_distances(self):
        return [RandomProjections, Exploding]


@pytest.fixture(scope="module")
def registry():
    return Registry(
        builtins=MODULES, entry_points=False, extra_plugins=[(_TestDistances(), "tests")]
    )


def _problem(registry, n=10, d=3, m=5, seed=0, bias=False):
    rng = np.random.default_rng(seed)
    if bias:
        x = np.linspace(-0.5, 0.5, n)
        X, Y = np.column_stack([x, np.ones(n)]), np.sin(10 * x)
        d = 2
    else:
        X, Y = rng.normal(size=(n, d)), rng.normal(size=n)
    W0, a0 = rng.normal(size=(d, m)), rng.choice([-1.0, 1.0], size=m)
    return Problem(
        X=X, Y=Y, W0=W0, a0=a0, bias=bias, rng=np.random.default_rng(1), registry=registry
    )


def _algorithm(problem, **params):
    algorithm = ProximalPoint(**validate_params("algorithm", params, ProximalPoint.params))
    algorithm.setup(problem)
    return algorithm


def _config(runs_dir, steps=6, **algorithm):
    return {
        "experiment": "proxpoint_test",
        "seed": 2,
        "model": {"width": 12},
        "data": {"name": "sinus", "n": 10},
        "init": {"name": "normal"},
        "algorithm": {
            "name": "proxpoint",
            "gamma": 0.05,
            "inner_steps": 8,
            "lr": 0.01,
            **algorithm,
        },
        "stoppers": {"max_steps": {"steps": steps}, "divergence": {}},
        "loggers": {"scalars": {"every": 1}, "snapshots": {"every": 2}, "records": {"every": 1}},
        "savers": {"periodic": {"every_seconds": 0.0, "every_steps": 1}},
        "run": {"runs_dir": str(runs_dir), "display": "off"},
    }


def test_hooks_register_the_algorithm_and_the_plot(registry):
    assert "proxpoint" in registry.names("algorithm")
    assert "inner_loop" in registry.names("plot")
    assert not [f for f in registry.failures if "proxpoint" in f[0]]


def test_one_frobenius_step_is_a_gradient_step_up_to_second_order(registry):
    # argmin_W L(W) + |W - W_k|^2 / (gamma d m): grad L(W) + 2 (W - W_k) / (gamma d m) = 0,
    # so W = W_k - (gamma d m / 2) grad L(W_k) + O(gamma^2): the error drops 4x as gamma halves.
    d, m = 3, 5
    errors = []
    for gamma in (2e-3, 1e-3, 5e-4, 2.5e-4):
        problem = _problem(registry, d=d, m=m)
        step = gamma * d * m / 2
        # inner rate step / 2: the inner map contracts by about 1/2 per update (60 updates)
        algorithm = _algorithm(
            problem,
            gamma=gamma,
            inner_steps=60,
            lr=step / 2,
            train="first",
            distance="frobenius",
        )
        algorithm.step()
        _, grad_W, _ = model.loss_and_grad(problem.X, problem.Y, problem.W0, problem.a0)
        explicit = problem.W0 - step * grad_W
        errors.append(np.abs(algorithm.state()["W"] - explicit).max())
        relative = errors[-1] / (step * np.abs(grad_W).max())
    assert relative < 1e-2  # the second-order term is small against the step
    ratios = np.array(errors[:-1]) / np.array(errors[1:])
    assert np.all((ratios > 3.6) & (ratios < 4.4)), ratios


@pytest.mark.parametrize("train", ["first", "both"])
def test_converged_inner_loops_never_raise_the_loss(registry, train):
    # J_k(W_{k+1}) <= J_k(W_k) = L(W_k) and D >= 0, so L(W_{k+1}) <= L(W_k).
    algorithm = _algorithm(
        _problem(registry, bias=True, m=16),
        gamma=0.5,
        inner_steps=400,
        inner_tol=1e-13,
        lr=0.02,
        train=train,
        distance="frobenius",
    )
    losses = [algorithm.loss()]
    for _ in range(5):
        algorithm.step()
        scalars = algorithm.scalars()
        assert scalars["objective"] <= losses[-1]
        assert algorithm.loss() <= scalars["objective"] - scalars["distance"] / 0.5 + 1e-15
        losses.append(algorithm.loss())
    assert np.all(np.diff(losses) <= 0) and losses[-1] < losses[0]


def test_learning_rate_decays_each_time_the_objective_does_not_decrease(registry):
    lr, decay = 0.4, 0.5
    algorithm = _algorithm(
        _problem(registry, bias=True, m=8),
        gamma=1.0,
        inner_steps=15,
        lr=lr,
        lr_decay=decay,
        distance="frobenius",
    )
    factor, rises, kept = 1.0, 0, 0
    for _ in range(3):
        previous = algorithm.loss()  # J_0 = L(W_k): the distance vanishes at W_k
        algorithm.step()
        records = algorithm.records()
        for objective, used in zip(records["objective"], records["lr"]):
            assert used == lr * factor
            if objective >= previous:
                factor *= decay
                rises += 1
            else:
                kept += 1
            previous = objective
        assert algorithm.scalars()["inner_lr"] == lr * factor  # carried to the next step
    assert rises >= 2 and kept >= 2


def test_inner_tol_stops_the_inner_loop_on_a_small_relative_change(registry):
    algorithm = _algorithm(
        _problem(registry, bias=True, m=8),
        gamma=0.5,
        inner_steps=500,
        inner_tol=1e-4,
        lr=0.05,
        distance="frobenius",
    )
    start = algorithm.loss()
    algorithm.step()
    J = np.concatenate([[start], algorithm.records()["objective"]])
    change = np.abs(np.diff(J)) / np.abs(J[:-1])
    assert algorithm.scalars()["inner_iters"] == len(J) - 1 < 500
    assert change[-1] < 1e-4 and np.all(change[:-1] >= 1e-4)


def test_train_first_keeps_the_second_layer(registry):
    problem = _problem(registry, bias=True, m=8)
    first = _algorithm(problem, train="first", distance="frobenius")
    both = _algorithm(problem, train="both", distance="frobenius")
    for algorithm in (first, both):
        for _ in range(3):
            algorithm.step()
    np.testing.assert_array_equal(first.state()["a"], problem.a0)
    assert not np.array_equal(first.state()["W"], problem.W0)
    assert not np.array_equal(both.state()["a"], problem.a0)


def test_weight_decay_is_part_of_the_objective(registry):
    problem = _problem(registry, bias=True, m=8)
    gamma, lam = 0.3, 0.1
    algorithm = _algorithm(
        problem, gamma=gamma, weight_decay=lam, inner_steps=5, distance="frobenius"
    )
    algorithm.step()
    W, a = algorithm.state()["W"], algorithm.state()["a"]
    loss = model.loss(problem.X, problem.Y, W, a)
    distance = np.sum((W - problem.W0) ** 2) / W.size
    penalty = lam / 2 * (np.sum(W**2) + np.sum(a**2))
    scalars = algorithm.scalars()
    assert algorithm.loss() == pytest.approx(loss, rel=1e-12)
    assert scalars["distance"] == pytest.approx(distance, rel=1e-12)
    assert scalars["objective"] == pytest.approx(loss + penalty + distance / gamma, rel=1e-12)
    assert algorithm.records()["objective"][-1] == scalars["objective"]


def test_state_dict_continues_exactly_with_a_random_distance(registry, tmp_path):
    options = dict(
        optimizer="adamw", lr=0.05, lr_decay=0.9, inner_steps=6, distance="test_projections"
    )
    straight = _algorithm(_problem(registry, bias=True, m=8), **options)
    first = _algorithm(_problem(registry, bias=True, m=8), **options)
    for _ in range(3):
        straight.step()
        first.step()
    save_state(tmp_path / "state.npz", first.state_dict())
    second = _algorithm(_problem(registry, bias=True, m=8), **options)
    second.load_state_dict(load_state(tmp_path / "state.npz"))
    for _ in range(3):
        straight.step()
        second.step()
    for key in ("W", "a"):
        np.testing.assert_array_equal(second.state()[key], straight.state()[key])
    assert second.loss() == straight.loss() and second.scalars() == straight.scalars()
    assert second.scalars()["calls"] == 6 * 6  # one distance value per inner update


SLICED = {"distance": "sliced", "distance_options": {"n_projections": 50}}


@pytest.mark.parametrize(
    "algorithm",
    [
        {"optimizer": "momentum", "lr_decay": 0.8},
        {"optimizer": "adamw", "distance": "test_projections", "distance_options": {"count": 2}},
        {"optimizer": "adamw", "lr_decay": 0.9, **SLICED},
        {**SLICED, "distance_options": {"n_projections": 50, "resample": "call"}},
        {"optimizer": "momentum", "distance": "wasserstein", "gamma": 0.01},
    ],
    ids=["frobenius-momentum", "random-adamw", "sliced-adamw", "sliced-every-call", "wasserstein"],
)
def test_loop_resume_equals_uninterrupted_run(registry, tmp_path, algorithm):
    algorithm = {"distance": "frobenius", **algorithm}
    if algorithm["distance"] in ("sliced", "wasserstein"):
        pytest.importorskip("ot")
    straight = start_run(resolve(_config(tmp_path / "a", 6, **algorithm), registry), "", registry)
    cut = start_run(resolve(_config(tmp_path / "b", 3, **algorithm), registry), "", registry)
    resumed = resume_run(cut.path, registry, overrides=["stoppers.max_steps.steps=6"])
    assert straight.status == resumed.status == "finished" and resumed.meta["steps"] == 6
    for key in ("W", "a"):
        np.testing.assert_array_equal(resumed.snapshots[key][-1], straight.snapshots[key][-1])
    for key in straight.scalars.keys() - {"elapsed"}:
        np.testing.assert_array_equal(resumed.scalars[key], straight.scalars[key])
    for key in ("step", "objective", "distance", "lr"):
        np.testing.assert_array_equal(resumed.records[key], straight.records[key])


def test_a_resume_may_change_the_learning_rate(registry, tmp_path):
    config = _config(tmp_path, 2, distance="frobenius", lr_decay=0.5, lr=0.3)
    cut = start_run(resolve(config, registry), "", registry)
    factor = cut.scalars["inner_lr"][-1] / 0.3
    resumed = resume_run(
        cut.path, registry, overrides=["stoppers.max_steps.steps=3", "algorithm.lr=0.1"]
    )
    assert resumed.status == "finished"
    assert resumed.records["lr"][resumed.records["step"] == 3][0] == 0.1 * factor


def test_a_non_finite_distance_ends_the_run_diverged_with_its_trace(registry, tmp_path):
    config = _config(
        tmp_path, 20, distance="test_exploding", distance_options={"after": 20}, inner_steps=8
    )
    run = start_run(resolve(config, registry), "", registry)
    assert run.status == "diverged" and "non-finite" in run.meta["reason"]
    assert run.meta["steps"] == 3  # step 3 makes calls 17..24; the 21st is its 5th, NaN
    assert np.isnan(run.scalars["loss"][-1]) and np.all(np.isfinite(run.scalars["loss"][:-1]))
    last = run.records["step"] == 3
    assert np.isnan(run.records["objective"][last][-1])
    assert run.records["objective"][last].size == 5  # the inner loop stopped there


def test_a_diverging_inner_optimizer_ends_the_run_diverged(registry, tmp_path):
    config = _config(tmp_path, 20, distance="frobenius", lr=1e6, gamma=1e-6)
    run = start_run(resolve(config, registry), "", registry)
    assert run.status == "diverged"
    assert not np.isfinite(run.scalars["loss"][-1])


def test_bad_input_is_one_line_naming_the_key(registry, tmp_path):
    for key, value, match in (
        ("gamma", 0.0, r"algorithm \(proxpoint\)\.gamma must be a float in \(0, inf\)"),
        ("gamma", -1.0, r"gamma must be a float in \(0, inf\)"),
        ("inner_steps", 0, r"inner_steps must be an int in \[1, inf\)"),
        ("lr_decay", 1.5, r"lr_decay must be"),
        ("train", "second", r"train must be one of"),
    ):
        with pytest.raises(ConfigError, match=match) as info:
            resolve(_config(tmp_path, **{key: value}), registry)
        assert "\n" not in str(info.value)
    with pytest.raises(PluginError, match="unknown distance 'frobenuis'") as info:
        resolve(_config(tmp_path, distance="frobenuis"), registry)
    assert "available: frobenius, sliced, test_exploding, test_projections, wasserstein" in str(
        info.value
    )
    with pytest.raises(ConfigError, match="unknown key 'cout'"):
        resolve(
            _config(tmp_path, distance="test_projections", distance_options={"cout": 2}),
            registry,
        )


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")
def test_cuda_without_a_device_is_a_config_error(registry):
    with pytest.raises(ConfigError, match="no CUDA device"):
        _algorithm(_problem(registry), device="cuda", distance="frobenius")


def test_float32_keeps_its_dtype(registry):
    algorithm = _algorithm(_problem(registry), dtype="float32", distance="frobenius")
    algorithm.step()
    assert algorithm.state()["W"].dtype == np.float32 and math.isfinite(algorithm.loss())


def test_inner_loop_plot_draws_every_inner_iteration(registry, tmp_path):
    pytest.importorskip("matplotlib")
    config = _config(tmp_path, 4, distance="frobenius", lr_decay=0.5, lr=0.2)
    run = start_run(resolve(config, registry), "", registry)
    plot = InnerLoop()
    assert plot.applies(run)
    figure = plot.draw(run)["inner_loop"]
    ax, lr_ax = figure.axes
    lines = {line.get_label(): line for line in ax.get_lines()}
    n_rows = 4 * 8
    np.testing.assert_array_equal(lines["objective"].get_xdata(), np.arange(1, n_rows + 1))
    np.testing.assert_array_equal(lines["objective"].get_ydata(), run.records["objective"])
    np.testing.assert_array_equal(lines["distance"].get_ydata(), run.records["distance"])
    np.testing.assert_array_equal(lr_ax.get_lines()[0].get_ydata(), run.records["lr"])
    assert ax.get_yscale() == "log" and lr_ax.get_yscale() == "log"
    (boundaries,) = ax.collections
    starts = [segment[0][0] for segment in boundaries.get_segments()]
    np.testing.assert_array_equal(starts, [8.5, 16.5, 24.5])


def test_inner_loop_plot_needs_the_proximal_records(registry, tmp_path):
    config = _config(tmp_path, 2, distance="frobenius")
    config["loggers"].pop("records")
    assert not InnerLoop().applies(start_run(resolve(config, registry), "", registry))
