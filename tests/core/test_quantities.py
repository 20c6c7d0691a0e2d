"""core.quantities against hand computations, loop by loop, on small random networks."""

import math

import numpy as np
import pytest

from core import quantities
from core.components import Problem


def problem(rng, n=9, d=3, m=5, k=1, test=True, scaling="standard"):
    """A random problem with its initial network, and a test set when asked."""
    a_shape = (m,) if k == 1 else (m, k)
    Y_shape = (n,) if k == 1 else (n, k)
    return Problem(
        X=rng.normal(size=(n, d)),
        Y=rng.normal(size=Y_shape),
        W0=rng.normal(size=(d, m)),
        a0=rng.normal(size=a_shape),
        scaling=scaling,
        X_test=rng.normal(size=(4, d)) if test else None,
        Y_test=rng.normal(size=(4,) + Y_shape[1:]) if test else None,
    )


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def test_activation_points_are_minus_b_over_w_and_inf_without_slope():
    W = np.array([[2.0, 0.0, -0.5, 0.0], [1.0, 3.0, 1.0, 0.0]])
    np.testing.assert_array_equal(quantities.activation_points(W), [-0.5, np.inf, 2.0, np.inf])


@pytest.mark.parametrize("k", [1, 3])
def test_neuron_norm_stats_by_hand(rng, k):
    p = problem(rng, k=k)
    W, a = p.W0 + 1.0, p.a0 * 2.0
    a2 = a.reshape(a.shape[0], -1)
    norms = [
        math.sqrt(sum(W[i, r] ** 2 for i in range(W.shape[0])))
        * math.sqrt(sum(a2[r, j] ** 2 for j in range(a2.shape[1])))
        for r in range(W.shape[1])
    ]
    got = quantities.neuron_norm_stats(W, a, p)
    assert got["neuron_norm_mean"] == pytest.approx(sum(norms) / len(norms), rel=1e-12)
    assert got["neuron_norm_max"] == pytest.approx(max(norms), rel=1e-12)
    assert got["neuron_norm_sum"] == pytest.approx(sum(norms), rel=1e-12)


def test_distance_from_init_absolute_and_relative_by_hand(rng):
    p = problem(rng)
    W, a = p.W0 + rng.normal(size=p.W0.shape), p.a0 - 0.5
    dW = [W[i, r] - p.W0[i, r] for i in range(W.shape[0]) for r in range(W.shape[1])]
    fro = math.sqrt(sum(x * x for x in dW))
    got = quantities.distance_from_init(W, a, p)
    assert got["dist_W"] == pytest.approx(fro, rel=1e-12)
    assert got["dist_a"] == pytest.approx(0.5 * math.sqrt(len(a)), rel=1e-12)
    assert got["dist_W_max"] == max(abs(x) for x in dW)
    rel = quantities.distance_from_init(W, a, p, relative=True)
    size_W0 = math.sqrt(sum(x * x for x in p.W0.ravel()))
    assert rel["dist_W"] == pytest.approx(fro / size_W0, rel=1e-12)
    assert rel["dist_a"] == pytest.approx(got["dist_a"] / math.dist(p.a0, 0 * p.a0), rel=1e-12)
    assert rel["dist_W_max"] == pytest.approx(got["dist_W_max"] / np.abs(p.W0).max(), rel=1e-12)
    assert quantities.distance_from_init(p.W0, p.a0, p) == dict.fromkeys(
        ("dist_W", "dist_a", "dist_W_max"), 0.0
    )


def test_distance_from_init_is_nan_for_another_shape_or_a_zero_initial_size(rng):
    p = problem(rng)
    wider = quantities.distance_from_init(np.ones((3, 6)), np.ones(6), p)
    assert list(wider) == ["dist_W", "dist_a", "dist_W_max"]
    assert all(math.isnan(v) for v in wider.values())
    p.a0 = np.zeros_like(p.a0)
    rel = quantities.distance_from_init(p.W0, np.ones_like(p.a0), p, relative=True)
    assert rel["dist_W"] == 0.0 and math.isnan(rel["dist_a"])


@pytest.mark.parametrize("data", ["train", "test"])
def test_n_patterns_counts_distinct_activation_columns_on_the_chosen_inputs(rng, data):
    p = problem(rng, n=6, d=2, m=40)
    X = p.X if data == "train" else p.X_test
    columns = {
        tuple(X[i] @ p.W0[:, r] > 0 for i in range(X.shape[0])) for r in range(p.W0.shape[1])
    }
    key = "n_patterns" if data == "train" else "n_patterns_test"
    got = quantities.n_patterns(p.W0, p.a0, p, data)
    assert got == {key: len(columns)} and 1 < len(columns) < 40
    assert isinstance(got[key], int)


def test_test_quantities_are_nan_without_a_test_set(rng):
    p = problem(rng, test=False)
    assert math.isnan(quantities.test_loss(p.W0, p.a0, p)["test_loss"])
    assert math.isnan(quantities.n_patterns(p.W0, p.a0, p, "test")["n_patterns_test"])
    with pytest.raises(ValueError, match="'train' or 'test'"):
        quantities.n_patterns(p.W0, p.a0, p, "valid")


@pytest.mark.parametrize("scaling", ["standard", "ntk", "mean_field"])
def test_losses_are_the_mean_squared_error_with_the_problem_scaling(rng, scaling):
    p = problem(rng, scaling=scaling)
    W, a = p.W0 * 0.5, p.a0
    m = W.shape[1]
    s = {"standard": 1.0, "ntk": 1 / math.sqrt(m), "mean_field": 1 / m}[scaling]
    for X, Y, key in ((p.X, p.Y, "train_loss"), (p.X_test, p.Y_test, "test_loss")):
        f = [s * sum(a[r] * max(X[i] @ W[:, r], 0.0) for r in range(m)) for i in range(X.shape[0])]
        by_hand = sum((f[i] - Y[i]) ** 2 for i in range(len(f))) / len(f)
        fn = quantities.train_loss if key == "train_loss" else quantities.test_loss
        assert fn(W, a, p) == {key: pytest.approx(by_hand, rel=1e-12)}


def test_a_float32_network_gives_the_numbers_of_its_float64_copy(rng):
    p = problem(rng)
    W, a = p.W0.astype(np.float32), p.a0.astype(np.float32)
    W64, a64 = W.astype(np.float64), a.astype(np.float64)
    for fn in (
        quantities.neuron_norm_stats,
        quantities.distance_from_init,
        quantities.train_loss,
        quantities.test_loss,
    ):
        assert fn(W, a, p) == fn(W64, a64, p), fn.__name__


def test_kinks_inside_the_data_range_by_hand():
    p = Problem(
        X=np.column_stack([np.linspace(-1, 1, 5), np.ones(5)]),
        Y=np.zeros(5),
        W0=np.zeros((2, 4)),
        a0=np.zeros(4),
    )
    W = np.array([[1.0, 1.0, 0.0, -2.0], [0.5, -3.0, 1.0, 1.0]])  # kinks -0.5, 3, inf, 0.5
    assert quantities.kinks_inside(W, None, p) == {"kinks_inside": 2}


def test_keys_are_unique_across_quantities(rng):
    p = problem(rng, d=2)
    keys = []
    for fn in (
        quantities.train_loss,
        quantities.test_loss,
        quantities.distance_from_init,
        quantities.neuron_norm_stats,
        quantities.n_patterns,
        quantities.kinks_inside,
    ):
        keys.extend(fn(p.W0, p.a0, p))
    keys.extend(quantities.n_patterns(p.W0, p.a0, p, "test"))
    assert len(keys) == len(set(keys))
