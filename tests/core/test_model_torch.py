"""The torch twin of the model agrees with the numpy model and with autograd."""

import numpy as np
import pytest

from core import model

torch = pytest.importorskip("torch")
model_torch = pytest.importorskip("core.model_torch")

SHAPES = [(6, 3, 4, None), (7, 2, 5, 1), (5, 4, 3, 3)]


def _network(n, d, m, k, seed=0):
    rng = np.random.default_rng(seed)
    tail = () if k is None else (k,)
    return (
        rng.normal(size=(n, d)),
        rng.normal(size=(n,) + tail),
        rng.normal(size=(d, m)),
        rng.normal(size=(m,) + tail),
    )


def _tensors(*arrays):
    return [torch.tensor(x, dtype=torch.float64) for x in arrays]


@pytest.mark.parametrize("scaling", model.SCALINGS)
@pytest.mark.parametrize("loss", model.LOSSES)
@pytest.mark.parametrize("shape", SHAPES)
def test_closed_form_matches_numpy_and_autograd(shape, scaling, loss):
    arrays = _network(*shape)
    X, Y, W, a = _tensors(*arrays)
    value, grad_W, grad_a = model_torch.loss_and_grad(X, Y, W, a, scaling, loss)
    ref_value, ref_W, ref_a = model.loss_and_grad(*arrays, scaling, loss)
    assert float(value) == pytest.approx(ref_value, rel=1e-13)
    np.testing.assert_allclose(grad_W.numpy(), ref_W, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(grad_a.numpy(), ref_a, rtol=1e-12, atol=1e-14)
    W.requires_grad_(True)
    a.requires_grad_(True)
    auto = model_torch.loss(X, Y, W, a, scaling, loss)
    auto_W, auto_a = torch.autograd.grad(auto, [W, a])
    assert float(auto.detach()) == pytest.approx(ref_value, rel=1e-13)
    np.testing.assert_allclose(grad_W.numpy(), auto_W.numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(grad_a.numpy(), auto_a.numpy(), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("shape", SHAPES)
def test_forward_matches_numpy(shape):
    arrays = _network(*shape)
    X, _, W, a = _tensors(*arrays)
    out = model_torch.forward(X, W, a, "ntk")
    assert isinstance(out, torch.Tensor)
    np.testing.assert_allclose(
        out.numpy(), model.forward(arrays[0], *arrays[2:], "ntk"), rtol=1e-13
    )


def test_relu_derivative_at_zero_agrees_with_autograd():
    arrays = list(_network(6, 3, 4, None))
    arrays[2][:, 1] = 0.0
    X, Y, W, a = _tensors(*arrays)
    _, grad_W, grad_a = model_torch.loss_and_grad(X, Y, W, a)
    W.requires_grad_(True)
    a.requires_grad_(True)
    auto_W, auto_a = torch.autograd.grad(model_torch.loss(X, Y, W, a), [W, a])
    assert torch.all(grad_W[:, 1] == 0) and grad_a[1] == 0
    assert torch.equal(auto_W[:, 1], grad_W[:, 1]) and auto_a[1] == 0


def test_closed_form_builds_no_graph():
    X, Y, W, a = _tensors(*_network(5, 3, 4, None))
    W.requires_grad_(True)
    value, grad_W, grad_a = model_torch.loss_and_grad(X, Y, W, a)
    assert not (value.requires_grad or grad_W.requires_grad or grad_a.requires_grad)


def test_float32_stays_float32():
    X, Y, W, a = [t.float() for t in _tensors(*_network(5, 3, 4, 2))]
    value, grad_W, grad_a = model_torch.loss_and_grad(X, Y, W, a, "ntk")
    assert value.dtype == grad_W.dtype == grad_a.dtype == torch.float32
