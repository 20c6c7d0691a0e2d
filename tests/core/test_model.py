"""The numpy model: closed-form gradient vs finite differences, conventions, invariances."""

import numpy as np
import pytest

from core import model

SHAPES = [  # n, d, m, k (None: 1-D targets and second layer)
    (6, 3, 4, None),
    (7, 2, 5, 1),
    (5, 4, 3, 3),
]


def _network(n, d, m, k, seed=0):
    rng = np.random.default_rng(seed)
    tail = () if k is None else (k,)
    X = rng.normal(size=(n, d))
    Y = rng.normal(size=(n,) + tail)
    W = rng.normal(size=(d, m))
    a = rng.normal(size=(m,) + tail)
    return X, Y, W, a


def _central_differences(f, x, h=1e-6):
    grad = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[idx] = h
        grad[idx] = (f(x + e) - f(x - e)) / (2 * h)
    return grad


@pytest.mark.parametrize("scaling", model.SCALINGS)
@pytest.mark.parametrize("loss", model.LOSSES)
@pytest.mark.parametrize("shape", SHAPES)
def test_gradient_matches_central_differences(shape, scaling, loss):
    X, Y, W, a = _network(*shape)
    value, grad_W, grad_a = model.loss_and_grad(X, Y, W, a, scaling, loss)
    assert value == pytest.approx(model.loss(X, Y, W, a, scaling, loss), rel=1e-14)
    assert grad_W.shape == W.shape and grad_a.shape == a.shape
    fd_W = _central_differences(lambda V: model.loss(X, Y, V, a, scaling, loss), W)
    fd_a = _central_differences(lambda b: model.loss(X, Y, W, b, scaling, loss), a)
    np.testing.assert_allclose(grad_W, fd_W, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(grad_a, fd_a, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize(
    "scaling, expected", [("standard", 1.0), ("ntk", 0.5), ("mean_field", 0.25)]
)
def test_output_scale(scaling, expected):
    assert model.output_scale(4, scaling) == expected


@pytest.mark.parametrize(
    "loss, expected", [("mse", 1 / 6), ("half_mse", 1 / 12), ("half_sum", 0.5)]
)
def test_loss_factor(loss, expected):
    assert model.loss_factor(3, 2, loss) == pytest.approx(expected)


def test_mse_is_the_mean_squared_error():
    X, Y, W, a = _network(5, 4, 3, 3)
    R = model.forward(X, W, a) - Y
    assert model.loss(X, Y, W, a) == pytest.approx(np.mean(R**2), rel=1e-14)


@pytest.mark.parametrize("name", ["scaling", "loss"])
def test_unknown_convention_is_named(name):
    X, Y, W, a = _network(*SHAPES[0])
    with pytest.raises(ValueError, match=name):
        model.loss(X, Y, W, a, **{name: "bogus"})


def test_relu_derivative_at_zero_is_zero():
    X, Y, W, a = _network(6, 3, 4, None)
    W[:, 1] = 0.0  # neuron 1 sits exactly at the kink on every point
    _, grad_W, grad_a = model.loss_and_grad(X, Y, W, a)
    assert np.all(grad_W[:, 1] == 0.0)
    assert grad_a[1] == 0.0
    # The one-sided derivative from above is not zero: the convention is a choice.
    e = np.zeros_like(W)
    e[0, 1] = 1e-7
    assert model.loss(X, Y, W + e, a) != model.loss(X, Y, W, a)


@pytest.mark.parametrize("shape", SHAPES)
def test_permuting_neurons_permutes_gradients(shape):
    X, Y, W, a = _network(*shape)
    perm = np.random.default_rng(1).permutation(W.shape[1])
    value, grad_W, grad_a = model.loss_and_grad(X, Y, W, a, "ntk")
    value_p, grad_W_p, grad_a_p = model.loss_and_grad(X, Y, W[:, perm], a[perm], "ntk")
    assert value_p == pytest.approx(value, rel=1e-13)
    np.testing.assert_allclose(grad_W_p, grad_W[:, perm], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(grad_a_p, grad_a[perm], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("c", [0.5, 3.0])
def test_positive_homogeneity(shape, c):
    X, Y, W, a = _network(*shape)
    np.testing.assert_allclose(model.forward(X, c * W, a / c), model.forward(X, W, a), rtol=1e-12)
    value, grad_W, grad_a = model.loss_and_grad(X, Y, W, a)
    value_c, grad_W_c, grad_a_c = model.loss_and_grad(X, Y, c * W, a / c)
    assert value_c == pytest.approx(value, rel=1e-12)
    np.testing.assert_allclose(grad_W_c, grad_W / c, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(grad_a_c, c * grad_a, rtol=1e-12, atol=1e-14)


def test_n_distinct_patterns_counts_duplicated_neurons_once():
    X, _, W, _ = _network(8, 3, 4, None)
    doubled = np.concatenate([W, 2.0 * W], axis=1)
    assert model.n_distinct_patterns(X, doubled) == model.n_distinct_patterns(X, W)
