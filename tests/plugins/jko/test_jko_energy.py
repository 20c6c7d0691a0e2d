"""The measure view of a problem and the quadratic energy F written once."""

import numpy as np
import pytest
from jko_cases import grid_problem

from core import model
from core.components import Problem
from core.errors import ConfigError
from plugins.jko import QuadraticEnergy, energy_from_problem, measure_from_problem


@pytest.mark.parametrize("scaling", ["standard", "ntk", "mean_field"])
@pytest.mark.parametrize("loss", ["mse", "half_mse", "half_sum"])
def test_energy_loss_is_core_model_loss(scaling, loss):
    problem = grid_problem(per_axis=5, signs="random", jitter=1.0, scaling=scaling, loss=loss)
    measure = measure_from_problem(problem)
    energy = energy_from_problem(problem, measure)
    p = measure.p * np.linspace(0.5, 2.0, measure.p.size)
    expected = model.loss(problem.X, problem.Y, measure.W, measure.s * p, scaling, loss)
    assert energy.loss(p) == pytest.approx(expected, rel=1e-12)


def test_measure_signs_and_masses():
    problem = grid_problem(per_axis=3, signs="both", mass=0.5)
    measure = measure_from_problem(problem)
    assert np.array_equal(measure.s, np.r_[np.ones(9), -np.ones(9)])
    assert np.allclose(measure.p, 0.5)
    assert np.allclose(measure.a, problem.a0)


def test_multi_output_is_refused():
    problem = grid_problem(per_axis=3)
    problem = Problem(
        X=problem.X, Y=np.c_[problem.Y, problem.Y], W0=problem.W0, a0=np.c_[problem.a0, problem.a0]
    )
    with pytest.raises(ConfigError, match="one output"):
        measure_from_problem(problem)


def test_weight_decay_is_linear_in_mass():
    problem = grid_problem(per_axis=4, signs="random", jitter=1.0)
    measure = measure_from_problem(problem)
    plain = energy_from_problem(problem, measure)
    decayed = energy_from_problem(problem, measure, weight_decay=0.3)
    p = measure.p
    extra = 0.3 * np.sum(p * np.sum(measure.W**2, axis=0))
    assert decayed.value(p) == pytest.approx(plain.value(p) + extra, rel=1e-12)
    assert decayed.loss(p) == pytest.approx(plain.loss(p), rel=1e-12)


@pytest.mark.parametrize("N", [3, 40])  # Gram form (N < 2n) and factored form
def test_gradient_matches_finite_differences(N):
    rng = np.random.default_rng(N)
    energy = QuadraticEnergy(rng.normal(size=(5, N)), rng.normal(size=5), 0.7, rng.random(N))
    assert (energy._gram is not None) == (N < 10)
    p = rng.random(N)
    value, grad = energy.value_and_gradient(p)
    assert np.allclose(grad, energy.gradient(p), rtol=1e-12, atol=1e-12)
    eps = 1e-6
    fd = np.array(
        [(energy.value(p + eps * e) - energy.value(p - eps * e)) / (2 * eps) for e in np.eye(N)]
    )
    assert np.allclose(grad, fd, rtol=1e-7, atol=1e-7)
    assert value == pytest.approx(energy.value(p))
