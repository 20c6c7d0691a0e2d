r"""The two-layer ReLU network, written once in numpy.

The model on inputs :math:`x \in \mathbb{R}^d` (a bias is a constant-1 column of the
data, so ``d`` counts it) with ``m`` neurons and ``k`` outputs is

.. math::

    f(x) = s_m \sum_{r=1}^m a_r \, \mathrm{relu}(w_r \cdot x),

with first layer ``W`` of shape ``(d, m)`` (column ``r`` is neuron ``w_r``), second
layer ``a`` of shape ``(m,)`` (one output) or ``(m, k)``, and output scaling
:math:`s_m` = 1 (``"standard"``), :math:`1/\sqrt{m}` (``"ntk"``) or :math:`1/m`
(``"mean_field"``).

The loss on data ``X`` ``(n, d)``, ``Y`` ``(n,)`` or ``(n, k)`` is
:math:`L = c \sum_{i,j} (f(x_i)_j - y_{ij})^2` with the convention ``c`` set by
``loss``: ``"mse"`` (``1 / (n k)``, torch's ``MSELoss``), ``"half_mse"``
(``1 / (2 n k)``) or ``"half_sum"`` (``1 / 2``, the convention of Du et al. 2019).

Gradients (closed form, :math:`R = f(X) - Y`, :math:`Z = X W`,
:math:`D = 1[Z > 0]`):

.. math::

    \nabla_a L = 2 c \, s_m \, \mathrm{relu}(Z)^\top R, \qquad
    \nabla_W L = 2 c \, s_m \, X^\top \big( (R a^\top) \odot D \big).

The derivative of relu at 0 is taken as 0, as in torch.
"""

import numpy as np

__all__ = [
    "SCALINGS",
    "LOSSES",
    "output_scale",
    "loss_factor",
    "relu",
    "preactivations",
    "activation_pattern",
    "forward",
    "residual",
    "loss",
    "loss_and_grad",
    "n_distinct_patterns",
]

SCALINGS = ("standard", "ntk", "mean_field")
LOSSES = ("mse", "half_mse", "half_sum")


def output_scale(m, scaling="standard"):
    """Output scaling factor ``s_m`` for width ``m``.

    Parameters
    ----------
    m : int
        Number of neurons.
    scaling : {"standard", "ntk", "mean_field"}
        1, 1/sqrt(m) or 1/m.
    """
    if scaling == "standard":
        return 1.0
    if scaling == "ntk":
        return 1.0 / np.sqrt(m)
    if scaling == "mean_field":
        return 1.0 / m
    raise ValueError(f"scaling must be one of {SCALINGS}; got {scaling!r}")


def loss_factor(n, k=1, loss="mse"):
    """Constant ``c`` in ``L = c * sum (f - y)^2`` for ``n`` points and ``k`` outputs."""
    if loss == "mse":
        return 1.0 / (n * k)
    if loss == "half_mse":
        return 0.5 / (n * k)
    if loss == "half_sum":
        return 0.5
    raise ValueError(f"loss must be one of {LOSSES}; got {loss!r}")


def relu(z):
    """Element-wise ``max(z, 0)``."""
    return np.maximum(z, 0)


def preactivations(X, W):
    """Pre-activations ``Z = X W``.

    Parameters
    ----------
    X : ndarray, shape (n, d)
    W : ndarray, shape (d, m)

    Returns
    -------
    Z : ndarray, shape (n, m)
    """
    return X @ W


def activation_pattern(X, W):
    """Boolean activation pattern ``D = 1[X W > 0]``, shape ``(n, m)``."""
    return preactivations(X, W) > 0


def forward(X, W, a, scaling="standard"):
    """Network output ``f(X)``.

    Parameters
    ----------
    X : ndarray, shape (n, d)
    W : ndarray, shape (d, m)
    a : ndarray, shape (m,) or (m, k)
    scaling : str
        See :func:`output_scale`.

    Returns
    -------
    f : ndarray, shape (n,) or (n, k), following the shape of ``a``.
    """
    return output_scale(W.shape[1], scaling) * (relu(X @ W) @ a)


def residual(X, Y, W, a, scaling="standard"):
    """Residual ``f(X) - Y``, shape of ``Y``."""
    return forward(X, W, a, scaling) - Y


def _n_outputs(Y):
    return 1 if Y.ndim == 1 else Y.shape[1]


def loss(X, Y, W, a, scaling="standard", loss="mse"):
    """Squared loss ``c * sum (f(X) - Y)^2`` (see the module docstring for ``c``)."""
    R = residual(X, Y, W, a, scaling)
    return float(loss_factor(X.shape[0], _n_outputs(Y), loss) * np.sum(R * R))


def loss_and_grad(X, Y, W, a, scaling="standard", loss="mse"):
    """Loss and its closed-form gradient with respect to ``W`` and ``a``.

    One forward pass: ``Z = X W`` (2ndm flops), ``relu(Z) a`` (2nmk), then
    ``relu(Z)^T R`` (2nmk) and ``X^T ((R a^T) * D)`` (2ndm + nmk).

    Parameters
    ----------
    X : ndarray, shape (n, d)
    Y : ndarray, shape (n,) or (n, k)
    W : ndarray, shape (d, m)
    a : ndarray, shape (m,) or (m, k), same number of dimensions as ``Y``
    scaling, loss : str
        See :func:`output_scale` and :func:`loss_factor`.

    Returns
    -------
    value : float
    grad_W : ndarray, shape (d, m)
    grad_a : ndarray, shape of ``a``
    """
    n = X.shape[0]
    s = output_scale(W.shape[1], scaling)
    c = loss_factor(n, _n_outputs(Y), loss)
    Z = X @ W
    active = Z > 0  # relu'(0) = 0, as in torch
    H = np.multiply(Z, active, out=Z)  # relu in place: one (n, m) temporary fewer
    R = s * (H @ a) - Y
    value = float(c * np.sum(R * R))
    g = 2.0 * c * s
    grad_a = g * (H.T @ R)
    back = np.multiply(R[:, None], a, dtype=H.dtype) if a.ndim == 1 else R @ a.T  # (n, m)
    np.multiply(back, active, out=back)
    grad_W = g * (X.T @ back)
    return value, grad_W, grad_a


def n_distinct_patterns(X, W):
    """Number of distinct neuron activation patterns on the data.

    Neuron ``r``'s pattern is the column ``1[X w_r > 0]`` of length ``n``; two
    neurons in the same activation region of the data share it.

    Parameters
    ----------
    X : ndarray, shape (n, d)
    W : ndarray, shape (d, m)
    """
    D = activation_pattern(X, W)
    return int(np.unique(np.packbits(D, axis=0), axis=1).shape[1])
