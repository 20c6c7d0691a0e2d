r"""The two-layer ReLU network in torch: the twin of :mod:`core.model`.

Same model, shapes and conventions as :mod:`core.model` (read its docstring for the
math); the constants :func:`core.model.output_scale` and :func:`core.model.loss_factor`
are reused, not rewritten. :func:`forward` and :func:`loss` are differentiable by
autograd; :func:`loss_and_grad` is the closed-form gradient (no autograd graph), so
both can be checked against each other and against the numpy version.

This module imports torch at its top: only torch plugins import it, lazily.
"""

import torch

from .errors import ConfigError
from .model import loss_factor, output_scale

__all__ = ["check_device", "forward", "residual", "loss", "loss_and_grad"]


def check_device(device, owner="algorithm"):
    """Raise a one-line :class:`ConfigError` when ``device`` is ``"cuda"`` and torch
    finds no CUDA device."""
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"{owner}.device is 'cuda' but torch finds no CUDA device "
            f"(torch {torch.__version__}); set {owner}.device='cpu'"
        )


def _scale(m, scaling):
    # A Python float: a numpy scalar on the left of ``*`` would turn a tensor into an array.
    return float(output_scale(m, scaling))


def _n_outputs(Y):
    return 1 if Y.ndim == 1 else Y.shape[1]


def forward(X, W, a, scaling="standard"):
    """Network output ``f(X) = s_m relu(X W) a``.

    Parameters
    ----------
    X : Tensor, shape (n, d)
    W : Tensor, shape (d, m)
    a : Tensor, shape (m,) or (m, k)
    scaling : str
        See :func:`core.model.output_scale`.

    Returns
    -------
    f : Tensor, shape (n,) or (n, k), following the shape of ``a``.
    """
    return _scale(W.shape[1], scaling) * (torch.relu(X @ W) @ a)


def residual(X, Y, W, a, scaling="standard"):
    """Residual ``f(X) - Y``, shape of ``Y``."""
    return forward(X, W, a, scaling) - Y


def loss(X, Y, W, a, scaling="standard", loss="mse"):
    """Squared loss ``c * sum (f(X) - Y)^2`` as a 0-d tensor (differentiable).

    See :func:`core.model.loss_factor` for ``c``.
    """
    R = residual(X, Y, W, a, scaling)
    return loss_factor(X.shape[0], _n_outputs(Y), loss) * torch.sum(R * R)


def loss_and_grad(X, Y, W, a, scaling="standard", loss="mse"):
    """Loss and its closed-form gradient, without autograd.

    Same formula and flop count as :func:`core.model.loss_and_grad`; gradients with
    respect to tensors that require grad are computed from detached values.

    Parameters
    ----------
    X : Tensor, shape (n, d)
    Y : Tensor, shape (n,) or (n, k)
    W : Tensor, shape (d, m)
    a : Tensor, shape (m,) or (m, k), same number of dimensions as ``Y``
    scaling, loss : str
        See :func:`core.model.output_scale` and :func:`core.model.loss_factor`.

    Returns
    -------
    value : Tensor, 0-d
        The loss (a tensor, so that no device sync is forced).
    grad_W : Tensor, shape (d, m)
    grad_a : Tensor, shape of ``a``
    """
    with torch.no_grad():
        s = _scale(W.shape[1], scaling)
        c = loss_factor(X.shape[0], _n_outputs(Y), loss)
        Z = X @ W
        H = torch.relu(Z)
        R = s * (H @ a) - Y
        value = c * torch.sum(R * R)
        g = 2.0 * c * s
        grad_a = g * (H.T @ R)
        back = torch.outer(R, a) if a.ndim == 1 else R @ a.T  # (n, m)
        back *= Z > 0
        grad_W = g * (X.T @ back)
    return value, grad_W, grad_a
