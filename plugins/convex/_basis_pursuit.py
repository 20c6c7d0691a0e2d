r"""Certified interior point for group basis pursuit: the min-norm programs of Wang et al.

The gated min-norm programs (skip connection, plain, normalisation layers) are one
*group basis pursuit*,

.. math::

    \min_{z}\; \sum_j \|z_j\|_2 \quad\text{s.t.}\quad \sum_j A_j z_j = y,
    \qquad\text{dual:}\quad \max_\theta\; y^\top\theta
    \quad\text{s.t.}\quad \|A_j^\top \theta\|_2 \le 1\ \ \forall j,

with groups :math:`A_j` (``n x k``): ``D_j X`` for a ReLU pattern, ``X`` for the
skip neuron (:class:`MaskedGroups`, never forming ``D_j X``), or the ``U_i`` of
normalisation layers (:class:`DenseGroups`). As a cone program in the variables
:math:`x_j = (t_j, z_j)` in second-order cones, it is solved by a primal-dual
interior point (Nesterov-Todd scaling, Mehrotra predictor-corrector, infeasible
start; the second-order-cone algebra of :mod:`plugins.convex._first_order`, written
once there). The Newton systems reduce to the ``n x n`` Schur complement

.. math::

    N = \sum_j A_j [W_j^2]_{zz} A_j^\top
      = \sum_j \eta_j^2 A_j A_j^\top + 2 \sum_j \eta_j^2 (A_j v_j)(A_j v_j)^\top,

because the NT scaling of a second-order cone has :math:`W^2 = \eta^2 (2 \bar v
\bar v^\top - J)`, whose ``z`` block is :math:`\eta^2 (I + 2 v v^\top)` (``v`` the
tail of :math:`\bar v`): a scaled identity plus rank one. For masked groups the
first sum is :math:`(X X^\top) \odot (M\, \mathrm{diag}(\eta^2) M^\top)` and the
second :math:`Q Q^\top` with :math:`Q = \sqrt2\, \eta \odot (M \odot X V)`: per
iteration :math:`2 n^2 G` flops for ``N`` (``d`` times fewer than a dense block
per group), ``n^3 / 3`` for its Cholesky factor and four ``(n, d) x (d, G)``
matmuls, against the cone solver's ``n^2 G d``.

Certificate
    Every iterate's :math:`\theta` scaled to :math:`\theta / \max(1, \max_j
    \|A_j^\top\theta\|)` is dual feasible, so its value :math:`D` is a lower bound
    on the optimum. The infeasible-start Newton steps shrink the interpolation
    residual by the factor ``1 - alpha`` each (to rounding within 8-12 iterations),
    and the objective ``P`` of a point interpolating to ``feas_tol`` is the upper
    bound. A solve is *certified* when ``P - D <= tol * P`` and the interpolation
    residual is at most ``feas_tol * max(1, ||y||)``. Rounding limits the gap near
    1e-10 relative (the active groups' points and multipliers reach the cone
    boundary, ``t_j - ||z_j|| ~ mu``): ``tol`` 1e-8 (the default) leaves a margin,
    and an iteration that cannot proceed leaves the last point, reported
    uncertified when it is not. Against a planted point of norm :math:`\|w\|`, ``||w|| - D`` is
    then a certified bound on how far the planted point is from optimal, and
    ``||w|| - P > 0`` proves it is not optimal (:func:`planted_certificate`).

References
----------
L. Vandenberghe, "The CVXOPT linear and quadratic cone program solvers", 2010.
S. Mehrotra, "On the implementation of a primal-dual interior point method", SIAM J.
Optim. 2(4), 1992.
E. van den Berg & M. P. Friedlander, "Probing the Pareto frontier for basis pursuit
solutions", SIAM J. Sci. Comput. 31(2), 2008 (group basis pursuit and its dual).

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> X = rng.standard_normal((30, 4)) / np.sqrt(30)
>>> masks = np.hstack([np.ones((30, 1)), X @ rng.standard_normal((4, 20)) >= 0])
>>> res = solve_group_bp(MaskedGroups(X, masks), X @ np.array([1.0, 0, 0, 0]))
>>> res["certified"], bool(res["objective"] <= 1 + 1e-9)
(True, True)
"""

import numpy as np

from ._first_order import _boost, _jnorm, _jordan, _jordan_solve, _soc_step, group_norms
from ._program import ConvexSolverError

__all__ = [
    "MaskedGroups",
    "DenseGroups",
    "GroupBasisPursuit",
    "solve_group_bp",
    "planted_certificate",
]

_TINY = np.finfo(float).tiny


class MaskedGroups:
    r"""Groups :math:`A_j = \mathrm{diag}(M_{:j}) X` (``D_j X``; all-ones: the skip neuron).

    Parameters
    ----------
    X : ndarray, shape (n, d)
    masks : ndarray, shape (n, G)
        Boolean or 0/1 patterns, one column per group.
    """

    def __init__(self, X, masks):
        self.X = np.ascontiguousarray(X, dtype=float)
        self.M = np.ascontiguousarray(masks, dtype=float)
        self.n, self.k = self.X.shape
        self.G = self.M.shape[1]
        self.K = self.X @ self.X.T  # (n, n), once

    def apply(self, Z):
        """Columns ``A_j z_j``, shape (n, G), for ``Z`` (k, G): ``2 n d G`` flops."""
        return self.M * (self.X @ Z)

    def adjoint(self, theta):
        """Columns ``A_j^T theta``, shape (k, G): ``2 n d G`` flops."""
        return self.X.T @ (self.M * theta[:, None])

    def gram(self, weights):
        """``sum_j weights_j A_j A_j^T``, shape (n, n): ``n^2 G`` flops."""
        return self.K * ((self.M * weights) @ self.M.T)


class DenseGroups:
    """Groups given as matrices ``A`` of shape (G, n, k) (zero columns allowed).

    Parameters
    ----------
    A : ndarray, shape (G, n, k)
    """

    def __init__(self, A):
        self.A = np.ascontiguousarray(A, dtype=float)
        self.G, self.n, self.k = self.A.shape

    def apply(self, Z):
        return np.einsum("gnk,kg->ng", self.A, Z)

    def adjoint(self, theta):
        return np.einsum("gnk,n->kg", self.A, theta)

    def gram(self, weights):
        return np.einsum("gnk,g,gmk->nm", self.A, weights, self.A)


class GroupBasisPursuit:
    r"""Primal-dual interior point for group basis pursuit (module docstring).

    A plain object: :meth:`step` is one predictor-corrector iteration, :attr:`done`
    says whether the current point is certified, :meth:`state_dict` holds every
    array the iteration reads (a solve resumes bit for bit).

    Parameters
    ----------
    groups : MaskedGroups or DenseGroups
    y : ndarray, shape (n,)
    tol : float
        Relative duality gap that certifies.
    feas_tol : float
        Largest interpolation residual ``||sum_j A_j z_j - y||`` that certifies,
        relative to ``max(1, ||y||)``.
    """

    _STATE = ("t", "Z", "lq", "theta", "iteration")
    #: fraction of the step to the boundary taken
    STEP = 0.99
    #: relative regularisation of the Schur complement's diagonal
    REGULARIZATION = 1e-14
    #: steps of iterative refinement of each Newton solve (rounding in the
    #: ill-conditioned ``N`` otherwise lets the interpolation residual grow near the end)
    REFINE = 1

    def __init__(self, groups, y, tol=1e-8, feas_tol=1e-10):
        import scipy.linalg  # imported on first use

        self._linalg = scipy.linalg
        self.groups = groups
        self.y = np.asarray(y, dtype=float)
        self.tol, self.feas_tol = float(tol), float(feas_tol)
        k, G = groups.k, groups.G
        self.t = np.ones(G)
        self.Z = np.zeros((k, G))
        self.lq = np.zeros((k + 1, G))
        self.lq[0] = 1.0
        self.theta = np.zeros(groups.n)
        self.iteration = 0
        self.J = np.ones(k + 1)
        self.J[1:] = -1.0
        self._refresh()

    # -------------------------------------------------------------- certificate
    def _refresh(self):
        """Residuals, objective and dual bound at the current point."""
        g = self.groups
        self.rp = self.y - g.apply(self.Z).sum(axis=1)
        self.AtT = g.adjoint(self.theta)
        self.rd = -self.lq.copy()
        self.rd[0] += 1.0
        self.rd[1:] -= self.AtT
        self.objective = float(group_norms(self.Z).sum())
        worst = float(np.max(group_norms(self.AtT), initial=0.0))
        self.dual = float(self.y @ self.theta) / max(1.0, worst)
        self.residual = float(np.linalg.norm(self.rp))

    @property
    def gap(self):
        """``objective - dual``: bounds the suboptimality once the point is feasible."""
        return self.objective - self.dual

    @property
    def done(self):
        scale = max(1.0, float(np.linalg.norm(self.y)))
        return self.gap <= self.tol * max(self.objective, _TINY) and (
            self.residual <= self.feas_tol * scale
        )

    def report(self):
        """``objective``, ``dual``, ``gap``, ``residual``, ``iterations`` as floats."""
        return {
            "objective": self.objective,
            "dual": self.dual,
            "gap": self.gap,
            "residual": self.residual,
            "iterations": float(self.iteration),
        }

    def state_dict(self):
        return {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in self._items()}

    def _items(self):
        return ((k, getattr(self, k)) for k in self._STATE)

    def load_state_dict(self, state):
        for key in self._STATE:
            value = state[key]
            setattr(self, key, int(value) if key == "iteration" else np.array(value, dtype=float))
        self._refresh()

    # ----------------------------------------------------------------- iteration
    def _scaling(self):
        """NT scaling ``(v, eta)`` per group and the scaled point ``W lam``."""
        x = np.vstack([self.t[None], self.Z])
        sn, ln = _jnorm(x), _jnorm(self.lq)
        if not (np.all(sn > 0) and np.all(ln > 0)):
            raise self._stalled("a point left the cone interior")
        sb, lb = x / sn, self.lq / ln
        gamma = np.sqrt(0.5 * (1.0 + np.einsum("ig,ig->g", sb, lb)))
        v = (sb + self.J[:, None] * lb) / (2.0 * gamma)
        eta = np.sqrt(sn / ln)
        return x, v, eta, eta * _boost(v, self.lq)

    def _schur(self, v, eta):
        """Cholesky factor of ``N`` (module docstring)."""
        g = self.groups
        e2 = eta * eta
        Q = g.apply(v[1:]) * (np.sqrt(2.0) * eta)
        N = g.gram(e2)
        N += Q @ Q.T
        diag = np.einsum("ii->i", N)
        diag += self.REGULARIZATION * max(float(diag.max(initial=0.0)), _TINY)
        try:
            return self._linalg.cho_factor(N, lower=True, overwrite_a=True, check_finite=False)
        except np.linalg.LinAlgError:
            raise self._stalled("the Schur complement is not positive definite") from None

    @staticmethod
    def _w2(v, eta, u):
        r""":math:`W^2 u = \eta^2 (2 v (v^\top u) - J u)` per column."""
        out = 2.0 * v * np.einsum("ig,ig->g", v, u)
        out[0] -= u[0]
        out[1:] += u[1:]
        return out * (eta * eta)

    def step(self):
        """One predictor-corrector iteration; returns :meth:`report`."""
        g = self.groups
        G = g.G
        x, v, eta, zq = self._scaling()
        mu = float(np.einsum("ig,ig->", x, self.lq)) / G
        chol = self._schur(v, eta)
        Jv = self.J[:, None] * v

        def direction(dc):
            # dx = W dc - W^2 rd + W^2 A^T dtheta;  A dx = rp;  dlam = rd - A^T dtheta
            base = eta * _boost(v, dc) - self._w2(v, eta, self.rd)
            dx, dtheta = base, np.zeros_like(self.rp)
            for _ in range(1 + self.REFINE):  # iterative refinement of A dx = rp
                rhs = self.rp - g.apply(dx[1:]).sum(axis=1)
                step = self._linalg.cho_solve(chol, rhs, check_finite=False)
                dtheta = dtheta + step
                At = np.zeros_like(base)
                At[1:] = g.adjoint(step)
                dx = dx + self._w2(v, eta, At)
            At[1:] = g.adjoint(dtheta)
            dlq = self.rd - At
            return dx, dlq, dtheta

        def max_step(dx, dlq):
            return min(_soc_step(x, dx), _soc_step(self.lq, dlq))

        dx, dlq, _ = direction(-zq)
        alpha = min(1.0, max_step(dx, dlq))
        mu_aff = float(np.einsum("ig,ig->", x + alpha * dx, self.lq + alpha * dlq)) / G
        sigma = (max(mu_aff, 0.0) / mu) ** 3
        e = np.zeros_like(x)
        e[0] = 1.0
        scaled_dx = _boost(Jv, dx) / eta
        scaled_dl = eta * _boost(v, dlq)
        rc = -_jordan(zq, zq) + sigma * mu * e - _jordan(scaled_dx, scaled_dl)
        dx, dlq, dtheta = direction(_jordan_solve(zq, rc))
        alpha = min(1.0, self.STEP * max_step(dx, dlq))
        if not (np.isfinite(alpha) and alpha > 1e-12 and np.all(np.isfinite(dx))):
            raise self._stalled(f"step length {alpha:.3g}")
        self.t = self.t + alpha * dx[0]
        self.Z = self.Z + alpha * dx[1:]
        self.lq = self.lq + alpha * dlq
        self.theta = self.theta + alpha * dtheta
        self.iteration += 1
        self._refresh()
        return self.report()

    def _stalled(self, why):
        return ConvexSolverError(
            f"group basis pursuit stopped at iteration {self.iteration} ({why}) with relative "
            f"gap {self.gap / max(self.objective, _TINY):.2e} (tol {self.tol:g}) and residual "
            f"{self.residual:.2e}"
        )


def solve_group_bp(groups, y, tol=1e-8, feas_tol=1e-10, max_iter=100):
    """Solve a group basis pursuit to a certified relative gap ``tol``.

    Parameters
    ----------
    groups : MaskedGroups or DenseGroups
    y : ndarray, shape (n,)
    tol, feas_tol : float
        :class:`GroupBasisPursuit`.
    max_iter : int

    Returns
    -------
    dict
        ``Z`` (k, G), ``theta`` (n,), ``objective``, ``dual``, ``gap``, ``residual``,
        ``iterations`` and ``certified`` (bool). An iteration that cannot proceed
        ends the solve uncertified (``error`` says why), never silently.
    """
    engine = GroupBasisPursuit(groups, y, tol, feas_tol)
    error = None
    try:
        while not engine.done and engine.iteration < max_iter:
            engine.step()
    except ConvexSolverError as exc:
        error = str(exc)
    out = engine.report()
    out.update(Z=engine.Z, theta=engine.theta, certified=engine.done, error=error)
    return out


def planted_certificate(planted_norm, objective, dual):
    """How a planted feasible point's norm compares with a certified solve.

    Parameters
    ----------
    planted_norm : float
        The objective of the planted feasible point (``||w||`` for the skip program).
    objective, dual : float
        Upper and lower bounds on the optimum (a feasible point's value, a dual value).

    Returns
    -------
    dict of float
        ``planted_excess_max = planted_norm - dual`` (the planted point is optimal
        to within it) and ``planted_excess_min = planted_norm - objective`` (when
        positive, the planted point is proved not optimal).
    """
    return {
        "planted_excess_max": float(planted_norm - dual),
        "planted_excess_min": float(planted_norm - objective),
    }
