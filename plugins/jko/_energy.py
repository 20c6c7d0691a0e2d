r"""The network as a signed measure on fixed positions, and its quadratic energy.

On fixed positions :math:`w_1, \dots, w_N \in \mathbb{R}^d` with signs
:math:`s_j \in \{-1, +1\}` and masses :math:`p_j \ge 0` the network is

.. math::

    f(x) = s_N \sum_{j=1}^N s_j \, p_j \, \mathrm{relu}(w_j \cdot x),

(:math:`s_N` the output scale of :func:`core.model.output_scale`) and its energy on
data ``X`` ``(n, d)``, ``y`` ``(n,)`` is a quadratic in ``p``:

.. math::

    F(p) = c \, \| A p - y \|^2 + \beta^\top p, \qquad
    A = s_N \, \mathrm{relu}(X W) \, \mathrm{diag}(s), \qquad
    \beta_j = \lambda \, \| w_j \|^2,

with ``c`` the loss convention of :func:`core.model.loss_factor` and :math:`\lambda`
an optional weight decay (linear in ``p``: a mass at ``w_j`` costs
:math:`\lambda \|w_j\|^2`). The gradient is
:math:`\nabla F(p) = 2 c A^\top (A p - y) + \beta`.

Everything the JKO solvers need of ``F`` is here, written once.
"""

import numpy as np

from core import model
from core.errors import ConfigError

__all__ = ["QuadraticEnergy", "energy_from_problem"]


class QuadraticEnergy:
    r"""The energy :math:`F(p) = c \|A p - y\|^2 + \beta^\top p` and its derivatives.

    Parameters
    ----------
    A : ndarray, shape (n, N)
        Signed, scaled features (``A = s_N relu(X W) diag(s)``).
    y : ndarray, shape (n,)
        Targets.
    c : float
        Weight of the squared residual (``core.model.loss_factor``), ``>= 0``.
    beta : ndarray, shape (N,), optional
        Linear term (weight decay); zero by default.

    Notes
    -----
    Products with :math:`A^\top A` use the factored form :math:`A^\top (A p)`
    (``4 n N`` flops) unless ``N < 2 n``, where the Gram matrix
    :math:`G = A^\top A` (``2 N^2`` flops per product) is cheaper and is formed once.
    For the JKO grids ``N`` is in the thousands and ``n`` in the tens, so the
    factored form is the one used there.

    Examples
    --------
    >>> import numpy as np
    >>> E = QuadraticEnergy(np.eye(2), np.array([1.0, 0.0]), c=0.5)
    >>> E.value(np.array([1.0, 0.0]))
    0.0
    >>> E.gradient(np.array([0.0, 0.0]))
    array([-1.,  0.])
    """

    def __init__(self, A, y, c, beta=None):
        self.A = np.ascontiguousarray(A, dtype=np.float64)
        self.y = np.asarray(y, dtype=np.float64).reshape(-1)
        self.c = float(c)
        n, N = self.A.shape
        if self.y.shape != (n,):
            raise ValueError(f"y must have shape ({n},); got {self.y.shape}")
        self.beta = np.zeros(N) if beta is None else np.asarray(beta, dtype=np.float64)
        if self.beta.shape != (N,):
            raise ValueError(f"beta must have shape ({N},); got {self.beta.shape}")
        self._gram = None
        if N < 2 * n:
            self._gram = (self.A.T @ self.A, self.A.T @ self.y)

    @property
    def n_positions(self):
        """Number of positions ``N``."""
        return self.A.shape[1]

    @property
    def is_linear(self):
        """Whether the quadratic part vanishes (``c == 0`` or ``A == 0``)."""
        return self.c == 0.0 or not np.any(self.A)

    def residual(self, p):
        """``A p - y``, shape ``(n,)``."""
        return self.A @ p - self.y

    def loss(self, p):
        r"""The data term :math:`c \|A p - y\|^2` alone (the training loss)."""
        r = self.residual(p)
        return float(self.c * (r @ r))

    def value(self, p):
        """``F(p)``, data term plus linear term."""
        return self.loss(p) + float(self.beta @ p)

    def gradient(self, p):
        r""":math:`\nabla F(p) = 2 c A^\top (A p - y) + \beta`, shape ``(N,)``."""
        if self._gram is not None:
            G, Aty = self._gram
            return 2.0 * self.c * (G @ p - Aty) + self.beta
        return 2.0 * self.c * (self.A.T @ self.residual(p)) + self.beta

    def value_and_gradient(self, p):
        """``(F(p), grad F(p))`` with one residual evaluation."""
        r = self.residual(p)
        value = float(self.c * (r @ r) + self.beta @ p)
        return value, 2.0 * self.c * (self.A.T @ r) + self.beta

    def restrict(self, mask):
        """The energy of the positions in ``mask`` only (the others held at zero mass)."""
        return QuadraticEnergy(self.A[:, mask], self.y, self.c, self.beta[mask])


def energy_from_problem(problem, measure, weight_decay=0.0):
    """Build the :class:`QuadraticEnergy` of a problem's measure.

    Parameters
    ----------
    problem : core.components.Problem
        Data, output scaling and loss convention.
    measure : SignedMeasure
        Positions and signs (the masses are not used).
    weight_decay : float
        :math:`\\lambda`; the linear term is :math:`\\lambda \\|w_j\\|^2`.

    Returns
    -------
    QuadraticEnergy
        Its ``loss(p)`` equals ``core.model.loss(X, Y, W, s * p, scaling, loss)``.
    """
    X = np.asarray(problem.X, dtype=np.float64)
    Y = np.asarray(problem.Y, dtype=np.float64)
    if Y.ndim == 2:
        if Y.shape[1] != 1:
            raise ConfigError(f"algorithm (jko) needs one output; got Y of shape {Y.shape}")
        Y = Y[:, 0]
    N = measure.W.shape[1]
    scale = model.output_scale(N, problem.scaling)
    A = scale * model.relu(model.preactivations(X, measure.W)) * measure.s
    c = model.loss_factor(X.shape[0], 1, problem.loss)
    beta = weight_decay * np.sum(measure.W**2, axis=0) if weight_decay else None
    return QuadraticEnergy(A, Y, c, beta)
