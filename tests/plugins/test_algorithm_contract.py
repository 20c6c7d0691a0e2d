"""One contract test over every built-in algorithm (as sklearn's estimator checks).

On a small 1-D problem with a grid-initialised network (which every algorithm
accepts, the measure-based ones included):

* ``state()`` holds the network: ``W`` of shape (d, m) and ``a`` of shape (m,);
* ``loss()`` is the model's loss of that network (``core.model.loss``);
* ``state_dict()`` is storable without pickle and continues exactly: k steps,
  save, load into a fresh instance, k more steps == 2k uninterrupted steps.
"""

import numpy as np
import pytest

from core import model
from core.components import Problem
from core.params import validate_params
from core.registry import Registry
from core.store import load_state, save_state
from plugins import BUILTIN_PLUGINS

REGISTRY = Registry(builtins=BUILTIN_PLUGINS, entry_points=False)
ALGORITHMS = [e.name for e in REGISTRY.entries("algorithm") if e.available]
SETTINGS = {
    "gd": {"lr": 0.01},
    "gd_numpy": {"lr": 0.01},
    "jko": {"tau": 0.3, "gamma": 0.1},
    "proxpoint": {"inner_steps": 5},
    "population_gd": {"lr": 0.05},
}
TEACHER = {"population_gd"}
"""Algorithms of a teacher's population loss: their problem is data ``gaussian_teacher``
(k = 2, d = 2) and their loss the population loss of :mod:`plugins.population`."""


def _teacher_problem():
    data_cls = REGISTRY.get("data", "gaussian_teacher")
    data = data_cls(**validate_params("data", {"k": 2, "n": 8}, data_cls.params)).load(
        np.random.default_rng(0)
    )
    return Problem(
        X=data.X,
        Y=data.Y,
        W0=np.random.default_rng(1).standard_normal((2, 32)) / 4,
        a0=np.ones(32),
        loss="half_mse",
        seed=0,
        rng=np.random.default_rng(2),
        extras=data.extras,
        registry=REGISTRY,
    )


def _expected_loss(name, problem, W, a):
    if name in TEACHER:
        from plugins.population import population_loss

        return population_loss(W, problem.extras["V"])
    return model.loss(problem.X, problem.Y, W, a, problem.scaling, problem.loss)


def _problem(name=None):
    if name in TEACHER:
        return _teacher_problem()
    data_cls, init_cls = REGISTRY.get("data", "sinus"), REGISTRY.get("init", "grid")
    data = data_cls(**validate_params("data", {"n": 8}, data_cls.params)).load(
        np.random.default_rng(0)
    )
    init = init_cls(
        **validate_params(
            "init", {"per_axis": 4, "extent": 1.0, "signs": "both", "mass": 0.2}, init_cls.params
        )
    )
    W0, a0 = init.initialize(2, 16, 1, np.random.default_rng(1))
    return Problem(
        X=data.X,
        Y=data.Y,
        W0=W0,
        a0=a0,
        bias=True,
        seed=0,
        rng=np.random.default_rng(2),
        registry=REGISTRY,
    )


def _build(name):
    cls = REGISTRY.get("algorithm", name)
    algorithm = cls(**validate_params(name, SETTINGS.get(name, {}), cls.params))
    algorithm.setup(_problem(name))
    return algorithm


def _steps(algorithm, k):
    for _ in range(k):
        algorithm.step()
        algorithm.loss()


def test_every_builtin_algorithm_is_covered():
    assert {"gd", "gd_numpy", "jko"} <= set(ALGORITHMS)


@pytest.mark.parametrize("name", ALGORITHMS)
def test_state_is_the_network_and_loss_is_its_loss(name):
    algorithm = _build(name)
    problem = _problem(name)  # deterministic: the same arrays the algorithm got
    for _ in range(3):
        state = algorithm.state()
        W, a = np.asarray(state["W"], np.float64), np.asarray(state["a"], np.float64)
        assert W.shape == (2, 32) and a.shape == (32,)
        expected = _expected_loss(name, problem, W, a)
        assert algorithm.loss() == pytest.approx(expected, rel=1e-10, abs=1e-14)
        _steps(algorithm, 2)


@pytest.mark.parametrize("name", ALGORITHMS)
def test_state_dict_continues_exactly(name, tmp_path):
    straight = _build(name)
    _steps(straight, 6)
    first = _build(name)
    _steps(first, 3)
    save_state(tmp_path / "state.npz", first.state_dict())  # no pickle possible
    second = _build(name)
    second.load_state_dict(load_state(tmp_path / "state.npz"))
    _steps(second, 3)
    for key in ("W", "a"):
        np.testing.assert_array_equal(second.state()[key], straight.state()[key])
    assert second.loss() == straight.loss()
