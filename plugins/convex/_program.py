r"""The convex program of regularised two-layer ReLU training, written once.

Pilanci & Ergen (ICML 2020) showed that training a two-layer ReLU network with
squared loss and weight decay,

.. math::

    \min_{W, a}\; \tfrac12 \Big\| \sum_j \mathrm{relu}(X u_j)\, a_j - y \Big\|^2
    + \tfrac{\beta}{2} \sum_j \big(\|u_j\|^2 + a_j^2\big),

with enough neurons has the same optimal value as the convex group-lasso program
over the activation patterns :math:`D_i = \mathrm{diag}(\texttt{masks[:, i]})` of
the data,

.. math::

    \min_{v, w}\; \tfrac12 \Big\| \sum_i D_i X (v_i - w_i) - y \Big\|^2
    + \beta \sum_i \big(\|v_i\| + \|w_i\|\big)
    \quad\text{s.t.}\quad (2 D_i - I) X v_i \ge 0,\; (2 D_i - I) X w_i \ge 0,

when every pattern is listed (fewer patterns: an upper bound on the non-convex
optimum, reached by the network the solution gives). The cone constraints make
:math:`D_i X v_i = \mathrm{relu}(X v_i)`, so a solution gives a network
(:func:`recover_network`): neuron :math:`u = v_i / \sqrt{\|v_i\|}` with output
weight :math:`a = \sqrt{\|v_i\|}` (and :math:`-\sqrt{\|w_i\|}` for :math:`w_i`),
whose non-convex objective (:func:`nonconvex_objective`) equals the convex one.
Without the cones (``cones=False``) it is the *gated* ReLU relaxation of Mishkin,
Sahiner & Pilanci (ICML 2022): a lower bound whose recovered network need not
reproduce the fit.

Loss convention
---------------
The data term is :math:`\tfrac12\|r\|^2`, the ``"half_sum"`` loss of
:func:`core.model.loss` (constant :math:`c = 1/2`). A run with loss constant
:math:`c` and weight decay :math:`\lambda` minimises
:math:`c\|r\|^2 + \tfrac{\lambda}{2}(\|W\|_F^2 + \|a\|^2)
= 2c\,\big[\tfrac12\|r\|^2 + \tfrac{\lambda}{2c}\cdot\tfrac12(\ldots)\big]`,
which is this program with :math:`\beta = \lambda / (2c)`, its objective multiplied
by :math:`2c`: ``"half_sum"`` gives :math:`\beta = \lambda`, ``"mse"``
(:math:`c = 1/n`) gives :math:`\beta = \lambda n / 2` and ``"half_mse"``
(:math:`c = 1/(2n)`) gives :math:`\beta = \lambda n` (:func:`program_beta`,
:func:`loss_scale`).

Groups
------
Every pattern has two groups by default, :math:`v_i` (positive output weight) and
:math:`w_i` (negative). ``signs`` (``(P,)`` of +1 / -1) keeps one group per pattern
instead, :math:`v_i` where the sign is +1, :math:`w_i` where it is -1
(Gradient-Work's "neurons" mode: one group per neuron of a network, with the sign of
its output weight). The variables are always two ``(d, P)`` arrays ``V`` and ``Wn``;
the columns of groups that do not exist (:attr:`ConvexProgram.has_v`,
:attr:`ConvexProgram.has_w`) must be zero.

Masked products: :math:`D_i X v_i` is column ``i`` of ``masks * (X @ V)``; no
``D_i X`` is ever formed.

References
----------
M. Pilanci & T. Ergen, "Neural networks are convex regularizers: exact
polynomial-time convex optimization formulations for two-layer networks", ICML 2020.
A. Mishkin, A. Sahiner & M. Pilanci, "Fast convex optimization for two-layer ReLU
networks: equivalent model classes and cone decompositions", ICML 2022.
"""

from dataclasses import dataclass

import numpy as np

from core.errors import RelulabError
from core.model import loss_factor

__all__ = [
    "ConvexProgram",
    "ConvexSolverError",
    "predict",
    "residual",
    "penalty",
    "objective",
    "data_gradient",
    "cone_violation",
    "duality_gap",
    "group_norms",
    "recover_network",
    "nonconvex_objective",
    "program_beta",
    "loss_scale",
]


class ConvexSolverError(RelulabError):
    """A solver of the convex program failed (each solver tried is named with its status)."""


@dataclass
class ConvexProgram:
    """The convex training program (see the module docstring).

    Attributes
    ----------
    X : ndarray, shape (n, d)
        Inputs (a bias is a constant-1 last column).
    y : ndarray, shape (n,)
        Targets.
    masks : ndarray of bool, shape (n, P)
        The activation patterns: ``D_i = diag(masks[:, i])``.
    beta : float
        Group-lasso weight (>= 0), in the ``"half_sum"`` convention.
    cones : bool
        True: exact ReLU, with the cone constraints ``(2 D_i - I) X v_i >= 0`` and
        ``(2 D_i - I) X w_i >= 0``. False: the gated relaxation (no constraints).
    signs : ndarray of int, shape (P,), or None
        None: two groups per pattern (``v_i`` and ``w_i``). Otherwise one group per
        pattern: ``v_i`` where ``signs[i] == 1``, ``w_i`` where it is ``-1``.
    """

    X: np.ndarray
    y: np.ndarray
    masks: np.ndarray
    beta: float = 0.0
    cones: bool = True
    signs: np.ndarray | None = None

    def __post_init__(self):
        self.X = np.asarray(self.X, dtype=float)
        self.y = np.asarray(self.y, dtype=float)
        self.masks = np.asarray(self.masks, dtype=bool)
        self.beta = float(self.beta)
        self.cones = bool(self.cones)
        if self.X.ndim != 2 or self.y.shape != (self.X.shape[0],):
            raise ValueError(f"X must be (n, d) and y (n,); got {self.X.shape}, {self.y.shape}")
        if self.masks.ndim != 2 or self.masks.shape[0] != self.X.shape[0]:
            raise ValueError(f"masks must be (n, P) with n = {self.X.shape[0]}")
        if not self.beta >= 0:
            raise ValueError(f"beta must be >= 0; got {self.beta}")
        if self.signs is not None:
            self.signs = np.asarray(self.signs, dtype=int)
            if self.signs.shape != (self.n_patterns,) or not np.all(np.abs(self.signs) == 1):
                raise ValueError(f"signs must be (P,) = ({self.n_patterns},) of +1 / -1")

    @property
    def n(self):
        return self.X.shape[0]

    @property
    def d(self):
        return self.X.shape[1]

    @property
    def n_patterns(self):
        """P, the number of patterns."""
        return self.masks.shape[1]

    @property
    def has_v(self):
        """ndarray of bool, shape (P,): which ``v_i`` exist."""
        if self.signs is None:
            return np.ones(self.n_patterns, dtype=bool)
        return self.signs > 0

    @property
    def has_w(self):
        """ndarray of bool, shape (P,): which ``w_i`` exist."""
        if self.signs is None:
            return np.ones(self.n_patterns, dtype=bool)
        return self.signs < 0

    @property
    def n_groups(self):
        """Number of groups (variables ``v_i`` / ``w_i`` that exist)."""
        return int(self.has_v.sum() + self.has_w.sum())

    @property
    def orientation(self):
        """ndarray, shape (n, P): the diagonals of ``2 D_i - I`` (+1 / -1)."""
        return np.where(self.masks, 1.0, -1.0)

    def zeros(self):
        """Zero variables ``(V, Wn)``, each of shape (d, P)."""
        return np.zeros((self.d, self.n_patterns)), np.zeros((self.d, self.n_patterns))


def predict(program, V, Wn):
    """The convex model's output ``sum_i D_i X (v_i - w_i)``.

    Parameters
    ----------
    program : ConvexProgram
    V, Wn : ndarray, shape (d, P)

    Returns
    -------
    yhat : ndarray, shape (n,)
    """
    return np.einsum("np,np->n", program.masks, program.X @ (V - Wn))


def residual(program, V, Wn):
    """``predict - y``, shape (n,)."""
    return predict(program, V, Wn) - program.y


def group_norms(V):
    """Euclidean norms of the columns of ``V`` (d, P), shape (P,)."""
    return np.sqrt(np.einsum("dp,dp->p", V, V))


def penalty(program, V, Wn):
    """``beta * sum_i (||v_i|| + ||w_i||)``."""
    return program.beta * float(group_norms(V).sum() + group_norms(Wn).sum())


def objective(program, V, Wn):
    """``1/2 ||sum_i D_i X (v_i - w_i) - y||^2 + beta sum_i (||v_i|| + ||w_i||)``."""
    r = residual(program, V, Wn)
    return 0.5 * float(r @ r) + penalty(program, V, Wn)


def data_gradient(program, V, Wn):
    """Gradient of the data term ``1/2 ||r||^2`` with respect to ``V``, shape (d, P).

    Column ``i`` is ``X^T D_i r``; the gradient with respect to ``Wn`` is its
    negative. Columns of groups that do not exist are not zeroed.
    """
    r = residual(program, V, Wn)
    return program.X.T @ (program.masks * r[:, None])


def cone_violation(program, V, Wn):
    """Largest violation of the cone constraints, ``max(0, -(2 D_i - I) X u_i)``.

    Measured over every group (``v_i`` and ``w_i``) whatever ``program.cones``
    says: for the gated relaxation it tells how far the solution is from a ReLU
    network. 0.0 when feasible.
    """
    S = program.orientation
    worst = min(
        float(np.min(S * (program.X @ V), initial=0.0)),
        float(np.min(S * (program.X @ Wn), initial=0.0)),
    )
    return max(0.0, -worst)


def duality_gap(program, V, Wn, multipliers=None):
    r"""Duality gap certificate of ``(V, Wn)``: an upper bound on its suboptimality.

    The Lagrangian dual of the program is

    .. math::

        \max_{z, \lambda \ge 0, \mu \ge 0}\; -\tfrac12\|z\|^2 - z^\top y
        \quad\text{s.t.}\quad
        \|X^\top (D_i z - S_i \lambda_i)\| \le \beta,\;
        \|X^\top (D_i z + S_i \mu_i)\| \le \beta

    over the groups that exist, with :math:`S_i = 2 D_i - I` (and
    :math:`\lambda = \mu = 0` for the gated relaxation); at the optimum :math:`z` is
    the residual. The dual point is :math:`z = s\,r` with :math:`r` the residual of
    ``(V, Wn)`` and :math:`s \ge 0` the scaling that maximises the dual value
    while keeping the constraints (``multipliers`` scaled alike), so the gap is zero
    exactly at an optimum. Without ``multipliers`` on a program with cones, :math:`\lambda =
    \mu = 0` is used: still a valid bound (a smaller dual feasible set) but not
    tight in general.

    Parameters
    ----------
    program : ConvexProgram
    V, Wn : ndarray, shape (d, P)
        A primal point (feasible: the bound holds for points meeting the cones).
    multipliers : tuple of ndarray, shape (n, P) each, or None
        ``(lam, mu)``, non-negative multipliers of the cone constraints of ``v_i``
        and ``w_i`` (ignored when ``program.cones`` is False).

    Returns
    -------
    gap : float
        ``objective(V, Wn) - dual value`` (>= 0 up to rounding for a feasible point).
    """
    r = residual(program, V, Wn)
    Dz = program.masks * r[:, None]
    if program.cones and multipliers is not None:
        S = program.orientation
        lam, mu = (np.maximum(np.asarray(m, dtype=float), 0.0) for m in multipliers)
        Gv, Gw = Dz - S * lam, Dz + S * mu
    else:
        Gv = Gw = Dz
    norms = np.concatenate(
        [group_norms(program.X.T @ Gv)[program.has_v], group_norms(program.X.T @ Gw)[program.has_w]]
    )
    worst = float(norms.max(initial=0.0))
    # the dual value -s^2/2 |r|^2 - s r.y is concave in s: its maximiser, clipped to
    # the scalings that keep every constraint (the multipliers scale with z)
    s_max = np.inf if worst == 0.0 else program.beta / worst
    rr = float(r @ r)
    s = 0.0 if rr == 0.0 else min(max(-float(r @ program.y) / rr, 0.0), s_max)
    dual = -0.5 * s * s * rr - s * float(r @ program.y)
    return objective(program, V, Wn) - dual


def recover_network(V, Wn, tol=0.0):
    """The two-layer network of a solution: one neuron per non-zero group.

    ``u = v_i / sqrt(||v_i||)`` with ``a = +sqrt(||v_i||)``, and ``u = w_i /
    sqrt(||w_i||)`` with ``a = -sqrt(||w_i||)`` (balanced: ``||u||^2 = a^2 =
    ||v_i||``); groups of norm ``<= tol`` are dropped. The ``v`` neurons come first,
    in pattern order, then the ``w`` neurons.

    Parameters
    ----------
    V, Wn : ndarray, shape (d, P)
    tol : float
        Groups with norm at most ``tol`` are dropped.

    Returns
    -------
    W : ndarray, shape (d, m)
    a : ndarray, shape (m,)
    """
    blocks, signs = [], []
    for U, sign in ((V, 1.0), (Wn, -1.0)):
        norms = group_norms(U)
        keep = norms > tol
        root = np.sqrt(norms[keep])
        blocks.append(U[:, keep] / root)
        signs.append(sign * root)
    return np.concatenate(blocks, axis=1), np.concatenate(signs)


def nonconvex_objective(X, y, W, a, beta):
    """``1/2 ||relu(X W) a - y||^2 + beta/2 (||W||_F^2 + ||a||^2)`` of a network.

    Parameters
    ----------
    X : ndarray, shape (n, d)
    y : ndarray, shape (n,)
    W : ndarray, shape (d, m)
    a : ndarray, shape (m,)
    beta : float
    """
    r = np.maximum(X @ W, 0.0) @ a - y
    return 0.5 * float(r @ r) + 0.5 * beta * float(np.sum(W * W) + a @ a)


def program_beta(weight_decay, n, loss="mse"):
    """The program's ``beta`` for a run's weight decay and loss convention.

    ``beta = weight_decay / (2 c)`` with ``c = core.model.loss_factor(n, 1, loss)``
    (module docstring).
    """
    return weight_decay / (2.0 * loss_factor(n, 1, loss))


def loss_scale(n, loss="mse"):
    """``2 c``: the program's objective times this is the run's regularised objective."""
    return 2.0 * loss_factor(n, 1, loss)
