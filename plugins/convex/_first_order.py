r"""Certified iterative solvers of the convex program: FISTA / augmented Lagrangian, interior point.

Both forms of :mod:`plugins.convex._program` are a *masked group lasso*. With the
groups ``j = 1..G`` as the columns of ``Z`` (``d x G``), a signed mask ``M``
(``n x G``, entries 0 / +1 / -1: the pattern of the group times the sign of its
output weight) and, for the exact ReLU form, the orientations ``S = 2 |M| - 1``,

.. math::

    \min_Z\; P(Z) = \tfrac12 \|A Z - y\|^2 + \beta \sum_j \|z_j\|
    \quad (\text{s.t. } S \odot X Z \ge 0 \text{ with cones}),
    \qquad A Z = \mathrm{rowsum}(M \odot X Z) = \sum_j M_{:j} \odot X z_j.

:math:`A` and its adjoint are one matmul each over all groups, never a ``D_i X``
per pattern: :math:`AZ` costs :math:`2ndG` flops (``X @ Z``) plus :math:`2nG`,
:math:`A^\top r = X^\top (M \odot r)` the same (:func:`masked_forward`,
:func:`masked_adjoint`). ``G = 2P`` (``[masks, -masks]``: the ``v`` then the ``w``
groups) with cones, ``G = P`` for the gated form (``v_i`` and ``w_i`` enter only
through ``u_i = v_i - w_i`` and :math:`\|v_i\| + \|w_i\| \ge \|u_i\|`, so one group
per pattern is solved for; the solution puts ``u_i`` in ``v_i`` or ``-w_i``,
whichever breaks that group's cone constraint less, both being optimal) and with
``signs`` (one group per pattern).

Certificate (every iteration, both solvers)
    The Lagrangian dual of the program is

    .. math::

        \max_{\theta,\; \Lambda \ge 0}\; D(\theta) = -\tfrac12 \|\theta\|^2 - \theta^\top y
        \quad\text{s.t.}\quad \|X^\top(M_{:j} \odot \theta - S_{:j} \odot
        \Lambda_{:j})\| \le \beta\ \ \forall j

    (:math:`\Lambda = 0` for the gated form: the group-lasso dual; it is
    :func:`plugins.convex._program.duality_gap`'s). Both solvers compute, at a point
    with residual :math:`r = AZ - y` and multiplier estimate :math:`\Pi \ge 0`, the
    columns :math:`\Gamma_j = X^\top(M_{:j} \odot r - S_{:j} \odot \Pi_{:j})` (the
    gradient of FISTA's smooth part, the dual residual of the interior point), so
    :math:`(\theta, \Lambda) = s\,(r, \Pi)` is dual feasible for :math:`0 \le s \le
    \beta / \max_j \|\Gamma_j\|` (the constraints are jointly homogeneous); the best
    such ``s`` maximises the concave quadratic :math:`D(s r)` (the dual scaling of
    gap-safe screening, Ndiaye, Fercoq, Gramfort & Salmon 2017). The best dual value
    met, :math:`D^\star`, is a lower bound on the optimum and the recorded ``gap`` is
    :math:`P(Z) - D^\star \ge P(Z) - P^\star` (Z feasible). The recorded
    ``violation`` is the largest :math:`[-S \odot XZ]_+`, as
    :func:`plugins.convex._program.cone_violation` (0 for the gated form). A solve is
    certified (``done``) when ``gap <= tol * P(Z)`` and ``violation <= violation_tol
    * max|y|``. ``beta`` must be positive (otherwise no dual point is feasible but
    exact optima).

``first_order`` (:class:`GroupLassoAPG`)
    *Gated*: FISTA (Beck & Teboulle 2009) with the group soft-thresholding prox
    :math:`z_j \leftarrow (1 - \beta/(L\|z_j\|))_+ z_j`, step ``1/L`` from a
    power-iteration estimate of :math:`\|A\|_2^2`, doubled whenever the quadratic
    upper bound fails (checked on the Bregman divergence, computed without
    cancellation: :math:`\tfrac12 \|A(Z^+ - Y)\|^2 \le \tfrac L2 \|Z^+ - Y\|^2`), and
    the gradient restart of O'Donoghue & Candès (2015). One step is one iteration:
    two matmuls and about 10 passes over ``n x G`` arrays.

    *Cones*: the Hestenes-Powell-Rockafellar augmented Lagrangian of the constraints
    :math:`g(Z) = S \odot XZ \ge 0` with multipliers :math:`\Lambda \ge 0`
    (Rockafellar 1973; Bertsekas 1982, Sec. 3.1),

    .. math::

        \mathcal L_\rho(Z, \Lambda) = P(Z) + \tfrac{1}{2\rho}
        \sum \big( [\Lambda - \rho\, g(Z)]_+^2 - \Lambda^2 \big),

    minimised in ``Z`` by the FISTA above (smooth part's gradient
    :math:`X^\top(M \odot r - S \odot \Pi)`, :math:`\Pi = [\Lambda - \rho g]_+`,
    Lipschitz constant at most :math:`\|A\|^2 + \rho \|X\|^2`), warm-started, until
    the composite-gradient residual times :math:`\|Z\|` falls below a tolerance that
    tracks the outer errors; then :math:`\Lambda \leftarrow \Pi(Z)`, and :math:`\rho`
    is multiplied by 10 when the violation did not fall by a factor 4 (Bertsekas
    1982, Sec. 2.2; Conn, Gould & Toint 1991). One step is one such outer iteration.
    This is the method of pyscnn (Mishkin, Sahiner & Pilanci 2022). It is slow when
    ``beta`` is small: the data term is then nearly an interpolation (``dG >> n``)
    whose conditioning FISTA feels fully, and the optimal groups sit on extreme
    rays of their cones (``d - 1`` tight constraints each), a degenerate optimum for
    multiplier methods. Its iterations need no ``n x n`` matrix.

``interior_point`` (:class:`ConicInteriorPoint`)
    A primal-dual interior-point method for the cone program (Nesterov-Todd scaling,
    Mehrotra predictor-corrector, infeasible start: the method of CVXOPT's
    ``coneqp``, Vandenberghe 2010) in the variables :math:`(Z, t)` with
    :math:`(t_j, z_j)` in second-order cones, slacks :math:`s = S \odot XZ \ge 0`
    (cones) and duals :math:`\Lambda` (orthant) and :math:`\lambda_j` (SOC). Its
    Newton systems are :math:`(A^\top A \oplus 0 + \mathrm{blkdiag}_j B_j)\,\Delta =
    b` with :math:`(d+1) \times (d+1)` blocks :math:`B_j = W_j^{-2} + 0 \oplus
    X^\top \mathrm{diag}(\Lambda_{:j} / s_{:j}) X` (:math:`W_j` the NT scaling; the
    blocks of all groups are one :math:`(G, n) \times (n, d(d+1)/2)` matmul), solved
    by the Woodbury identity through the ``n x n`` Schur complement
    :math:`I + \sum_j (M_{:j} \odot X)\, [B_j^{-1}]_{zz} (M_{:j} \odot X)^\top`. The
    groups of one pattern (``v_i`` and ``w_i``) share the factor :math:`|M_{:j}|
    \odot X`, so their :math:`[B_j^{-1}]_{zz} = K_j^\top K_j` (:math:`K_j` the ``z``
    columns of :math:`L_j^{-1}`, :math:`B_j = L_j L_j^\top`) are merged by a QR
    factorisation of the stacked :math:`K_j` (a Gram form: the condition number is
    not squared): the Schur complement is :math:`I + F F^\top` with ``P d`` columns,
    :math:`n^2 P d` flops (numpy's ``F @ F.T`` is a symmetric rank-k update), formed
    in chunks of 32 MB. The gated form needs no block factorisation: without cones
    :math:`B_j^{-1} = W_j^2 = \eta_j^2 (2 \bar v_j \bar v_j^\top - J)` exactly, whose
    ``z`` block is a scaled identity plus rank one, so :math:`N = I + (X X^\top)
    \odot (M\,\mathrm{diag}(\eta^2) M^\top) + Q Q^\top` (:meth:`_gated_schur`,
    :math:`4 n^2 G` flops, ``d / 2`` times fewer; the identity of
    :mod:`plugins.convex._basis_pursuit`): at (n, d, P) = (1000, 50, 200) 3.6 s
    instead of 21 s on a loaded machine. With cones, per iteration that product
    dominates; then the blocks (:math:`n d^2 G` flops), an ``n x n`` Cholesky
    factorisation and two solves
    (predictor, corrector) of four matmuls each. ``schur="pcg"`` never forms ``N``
    unless its preconditioner fails: the two solves are preconditioned conjugate
    gradients with matrix-free products (:math:`2ndP` multiply-adds) and a
    pivoted-Cholesky-plus-isotropic approximation of ``N`` (:mod:`plugins.convex._schur`)
    to a relative residual ``PCG_RTOL = 1e-10`` (1e-8 gave the same iterates, 1e-6
    stalled at a relative gap of 1e-3); a solve that does not converge in
    ``PCG_MAX_ITER`` forms ``N`` as above for the rest of the iteration. At (n, d, P)
    = (1000, 50, 200) it takes the same 46 iterations to a relative gap of 1e-4 (53
    to 1e-6; objectives equal to 1e-7 relative) in 15.2 s instead of 27.3 s of CPU on
    one thread before this path existed (16.9 s against 31.9 s to 1e-6; best of two,
    load 2-4 on 2 cores; peak 185 MB of numpy arrays), at (600, 30, 150) 4.0 s
    instead of 4.7 s with ``schur="direct"``, at (450, 25, 120) a tie (2.26 s, 2.19
    s), at (300, 20, 100) it loses (0.81 s against 0.75 s): ``schur="auto"`` (the
    default) uses it when :math:`n^2 P d > 10^9`. The block inverses by ``dtrtri``
    and the one-pass orthant step also make the direct path faster: (300, 20, 100)
    0.52 s instead of 0.64 s to 1e-4 (best of four). Memory: a few ``n x G`` arrays, the
    ``n x n`` matrix and one chunk. About 25-55 iterations to a relative gap of 1e-6
    whatever ``beta`` (as many as Clarabel on the same problems), with iterates
    meeting the cone constraints to rounding at the end. The certificate stalls near
    a relative gap of 1e-7 (rounding in the ill-conditioned blocks): a smaller
    ``tol`` is refused.

References
----------
A. Beck & M. Teboulle, "A fast iterative shrinkage-thresholding algorithm for linear
inverse problems", SIAM J. Imaging Sci. 2(1), 2009.
B. O'Donoghue & E. Candès, "Adaptive restart for accelerated gradient schemes",
Found. Comput. Math. 15, 2015.
R. T. Rockafellar, "A dual approach to solving nonlinear programming problems by
unconstrained optimization", Math. Program. 5, 1973.
D. P. Bertsekas, "Constrained optimization and Lagrange multiplier methods",
Academic Press, 1982.
A. R. Conn, N. I. M. Gould & Ph. L. Toint, "A globally convergent augmented
Lagrangian algorithm for optimization with general constraints and simple
bounds", SIAM J. Numer. Anal. 28(2), 1991.
E. Ndiaye, O. Fercoq, A. Gramfort & J. Salmon, "Gap safe screening rules for
sparsity enforcing penalties", JMLR 18, 2017.
L. Vandenberghe, "The CVXOPT linear and quadratic cone program solvers", 2010
(Nesterov-Todd scaling of second-order cones, Sec. 4; the coneqp algorithm, Sec. 8).
S. Mehrotra, "On the implementation of a primal-dual interior point method", SIAM J.
Optim. 2(4), 1992.
A. Mishkin, A. Sahiner & M. Pilanci, "Fast convex optimization for two-layer ReLU
networks: equivalent model classes and cone decompositions", ICML 2022.

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> X = rng.standard_normal((30, 3))
>>> masks = X @ rng.standard_normal((3, 8)) >= 0
>>> y = np.maximum(X @ rng.standard_normal(3), 0)
>>> V, Wn, log = solve(X, y, masks, beta=0.1, cones=True, method="interior_point")
>>> log["converged"], log["gap"] <= 1e-6 * log["objective"]
(True, True)
>>> V2, Wn2, log2 = solve(X, y, masks, beta=0.1, cones=True, method="first_order")
>>> bool(abs(log2["objective"] - log["objective"]) <= 1e-5 * log["objective"])
True
"""

import math

import numpy as np

from core.components import Solver
from core.params import Param

from . import _schur
from ._program import ConvexSolverError

__all__ = [
    "FirstOrder",
    "InteriorPoint",
    "GroupLassoAPG",
    "ConicInteriorPoint",
    "solve",
    "masked_forward",
    "masked_adjoint",
    "group_norms",
    "block_soft_threshold",
    "operator_norm_squared",
    "scaled_dual",
    "signed_masks",
    "split_groups",
]

_TINY = np.finfo(float).tiny

# ---------------------------------------------------------------- pure array functions


def masked_forward(X, masks, Z):
    r"""The masked linear model :math:`\sum_j M_{:j} \odot X z_j` = ``rowsum(M * (X @ Z))``.

    Parameters
    ----------
    X : ndarray, shape (n, d)
    masks : ndarray, shape (n, G)
        Boolean patterns or signed masks (0 / +1 / -1).
    Z : ndarray, shape (d, G)

    Returns
    -------
    ndarray, shape (n,)
        ``2ndG + 2nG`` flops; one ``(n, G)`` temporary.
    """
    return np.einsum("ng,ng->n", masks, X @ Z)


def masked_adjoint(X, masks, r):
    r"""The adjoint of :func:`masked_forward`: column ``j`` is :math:`X^\top (M_{:j} \odot r)`.

    Parameters
    ----------
    X : ndarray, shape (n, d)
    masks : ndarray, shape (n, G)
    r : ndarray, shape (n,)

    Returns
    -------
    ndarray, shape (d, G)
        ``2ndG + nG`` flops: one ``(d, n) x (n, G)`` matmul.
    """
    return X.T @ (masks * r[:, None])


def group_norms(Z):
    """Euclidean norms of the columns of ``Z`` (d, G), shape (G,)."""
    return np.sqrt(np.einsum("dg,dg->g", Z, Z))


def block_soft_threshold(Z, t):
    r"""Prox of :math:`t \sum_j \|z_j\|`: :math:`z_j \leftarrow (1 - t / \|z_j\|)_+ z_j`.

    Parameters
    ----------
    Z : ndarray, shape (d, G)
    t : float
        Threshold (>= 0).

    Returns
    -------
    ndarray, shape (d, G)
        A new array; ``4dG`` flops.
    """
    scale = np.maximum(1.0 - t / np.maximum(group_norms(Z), _TINY), 0.0)
    return Z * scale


def operator_norm_squared(X, masks, rtol=1e-6, max_iter=300):
    r""":math:`\|A\|_2^2` of :math:`A Z = \mathrm{rowsum}(M \odot XZ)`, by power iteration.

    Iterates :math:`v \leftarrow A A^\top v / \|\cdot\|` on ``n``-vectors
    (:math:`A A^\top = (X X^\top) \odot (M M^\top)`, never formed) from a fixed
    start, until the Rayleigh quotient changes by less than ``rtol``. The estimate
    approaches :math:`\|A\|^2` from below: callers back it up by backtracking.

    Parameters
    ----------
    X : ndarray, shape (n, d)
    masks : ndarray, shape (n, G)
    rtol : float
    max_iter : int

    Returns
    -------
    float
        Each iteration costs :math:`4ndG` flops.
    """
    v = np.linspace(1.0, 2.0, X.shape[0])  # fixed: the result is deterministic
    v /= np.linalg.norm(v)
    value = 0.0
    for _ in range(max_iter):
        u = masked_forward(X, masks, masked_adjoint(X, masks, v))
        new = float(v @ u)
        norm = float(np.linalg.norm(u))
        if norm == 0.0:
            return 0.0
        v = u / norm
        if abs(new - value) <= rtol * new:
            return new
        value = new
    return value


def scaled_dual(r, y, grad_norms, beta):
    r"""Best dual value along the ray :math:`\theta = s\, r` (module docstring).

    Parameters
    ----------
    r : ndarray, shape (n,)
        A residual ``A Z - y``.
    y : ndarray, shape (n,)
    grad_norms : ndarray, shape (G,)
        :math:`\|\Gamma_j\|`, the norms of the columns
        :math:`X^\top(M_{:j} \odot r - S_{:j} \odot \Pi_{:j})` at the point of ``r``.
    beta : float

    Returns
    -------
    dual : float
        :math:`\max_{0 \le s \le \beta / \max_j \|\Gamma_j\|}
        -\tfrac{s^2}2 \|r\|^2 - s\, r^\top y`: a lower bound on the optimum.
    """
    rr = float(r @ r)
    ry = float(r @ y)
    worst = float(np.max(grad_norms, initial=0.0))
    s_max = math.inf if worst == 0.0 else beta / worst
    s = 0.0 if rr == 0.0 else min(max(-ry / rr, 0.0), s_max)
    return -0.5 * s * s * rr - s * ry


# ------------------------------------------------------------------ program <-> groups


def signed_masks(masks, cones, signs=None):
    """The signed masks of a program's groups (module docstring).

    Parameters
    ----------
    masks : ndarray of bool, shape (n, P)
    cones : bool
    signs : ndarray of int, shape (P,), or None

    Returns
    -------
    M : ndarray, shape (n, G)
        ``G = P`` with ``signs`` or gated, ``G = 2P`` otherwise (``[masks, -masks]``).
    layout : str
        ``"signed"``, ``"gated"`` or ``"pairs"``.
    """
    masks = np.asarray(masks, dtype=float)
    if signs is not None:
        return masks * np.asarray(signs, dtype=float), "signed"
    if not cones:
        return masks, "gated"
    return np.concatenate([masks, -masks], axis=1), "pairs"


def split_groups(masks, Z, XZ, layout, signs=None):
    """``(V, Wn)``, each (d, P), from the group variables of :func:`signed_masks`.

    Parameters
    ----------
    masks : ndarray of bool, shape (n, P)
    Z : ndarray, shape (d, G)
    XZ : ndarray, shape (n, G)
        ``X @ Z`` (for the gated layout: each ``u_i`` goes to ``v_i`` or to
        ``w_i = -u_i``, whichever breaks the cone constraint less).
    layout : str
    signs : ndarray of int, shape (P,), or None
    """
    P = masks.shape[1]
    if layout == "pairs":
        return Z[:, :P].copy(), Z[:, P:].copy()
    zero = np.zeros_like(Z)
    if layout == "signed":
        positive = np.asarray(signs) > 0
        return np.where(positive, Z, zero), np.where(positive, zero, Z)
    C = np.where(masks, XZ, -XZ)
    as_v = np.max(-C, axis=0, initial=0.0)
    as_w = np.max(C, axis=0, initial=0.0)
    positive = as_v <= as_w
    return np.where(positive, Z, zero), np.where(positive, zero, -Z)


def _multipliers(Lam, P, layout, signs):
    """``(lam, mu)``, each (n, P), from group multipliers ``Lam`` (n, G)."""
    if layout == "pairs":
        return Lam[:, :P].copy(), Lam[:, P:].copy()
    zero = np.zeros_like(Lam)
    positive = np.asarray(signs) > 0
    return np.where(positive, Lam, zero), np.where(positive, zero, Lam)


# --------------------------------------------------------------- shared engine plumbing


class _Engine:
    """What both engines share: data, certificate and the report of a step."""

    def _setup(self, X, y, M, beta, cones, tol, violation_tol):
        self.X = np.ascontiguousarray(X, dtype=float)
        self.y = np.asarray(y, dtype=float)
        self.M = np.ascontiguousarray(M, dtype=float)
        self.beta = float(beta)
        self.cones = bool(cones)
        self.tol = float(tol)
        self.violation_tol = float(violation_tol)
        if not self.beta > 0:
            raise ConvexSolverError(
                f"the iterative solvers need beta > 0 for their certificate; got {beta}"
            )
        self.S = 2.0 * np.abs(self.M) - 1.0 if self.cones else None
        self.scale_y = float(np.max(np.abs(self.y), initial=0.0))
        self.dual_best = 0.0  # theta = 0 is dual feasible

    def _certify(self, XZ, Z, Pi):
        """Objective, violation and the dual bound at a point (module docstring).

        ``Gamma = X.T @ (M * r - S * Pi)`` (one matmul); returns it.
        """
        r = np.einsum("ng,ng->n", self.M, XZ) - self.y
        Phi = self.M * r[:, None]
        if Pi is not None:
            Phi -= self.S * Pi
        Gamma = self.X.T @ Phi
        dual = scaled_dual(r, self.y, group_norms(Gamma), self.beta)
        self.dual_best = max(self.dual_best, dual)
        self.objective = 0.5 * float(r @ r) + self.beta * float(group_norms(Z).sum())
        if self.cones:
            self.violation = max(0.0, -float(np.min(self.S * XZ, initial=0.0)))
        else:
            self.violation = 0.0
        return r, Gamma

    @property
    def gap(self):
        """``objective - dual_best``: an upper bound on the suboptimality."""
        return self.objective - self.dual_best

    @property
    def done(self):
        """Whether the current point is certified (module docstring)."""
        return (
            self.gap <= self.tol * self.objective
            and self.violation <= self.violation_tol * self.scale_y
        )

    def report(self):
        """``objective``, ``gap``, ``violation`` and ``iterations`` as floats."""
        return {
            "objective": float(self.objective),
            "gap": float(self.gap),
            "violation": float(self.violation),
            "iterations": float(self.iteration),
        }

    def state_dict(self):
        """Every array and number the iteration reads (copies)."""
        state = {}
        for key in self._STATE:
            value = getattr(self, key)
            state[key] = value.copy() if isinstance(value, np.ndarray) else value
        return state

    def load_state_dict(self, state):
        for key in self._STATE:
            value = state[key]
            if isinstance(getattr(self, key), np.ndarray):
                value = np.array(value, dtype=float)
            elif isinstance(getattr(self, key), int):
                value = int(value)
            else:
                value = float(value)
            setattr(self, key, value)
        self._refresh()
        self.dual_best = float(state["dual_best"])  # as saved: the refresh may not raise it


# ------------------------------------------------------------------- FISTA / AL engine


class GroupLassoAPG(_Engine):
    r"""FISTA on the masked group lasso, with an augmented Lagrangian for the cones.

    A plain object (not a plugin): :class:`FirstOrder` and :func:`solve` drive it.
    Its state is :meth:`state_dict` (arrays and floats), so a solve resumes bit for
    bit; everything else is derived from it.

    Parameters
    ----------
    X : ndarray, shape (n, d)
    y : ndarray, shape (n,)
    M : ndarray, shape (n, G)
        Signed masks (0 / +1 / -1), one column per group.
    beta : float
        Positive.
    cones : bool
        Impose ``S * (X @ Z) >= 0`` with ``S = 2 |M| - 1``.
    tol : float
        Relative duality gap that certifies.
    violation_tol : float
        Largest cone violation allowed, relative to ``max |y|``.
    max_inner : int
        Cap on FISTA iterations per augmented-Lagrangian iteration.
    rho : float or None
        Initial penalty (None: :math:`\|A\|^2 / \|X\|^2`, which balances the two
        parts of the Lipschitz constant).
    """

    _STATE = (
        "Z",
        "Z_prev",
        "XZ",
        "XZ_prev",
        "t",
        "L",
        "dual_best",
        "iteration",
        "Lam",
        "rho",
        "outer",
        "inner_tol",
        "violation_prev",
    )

    def __init__(
        self, X, y, M, beta, cones, tol=1e-6, violation_tol=1e-6, max_inner=1000, rho=None
    ):
        self._setup(X, y, M, beta, cones, tol, violation_tol)
        self.max_inner = int(max_inner)
        n, d = self.X.shape
        G = self.M.shape[1]
        self.L_data = operator_norm_squared(self.X, self.M)
        self.X_norm2 = float(np.linalg.norm(self.X, 2) ** 2) if self.cones else 0.0
        if rho is None:
            rho = self.L_data / self.X_norm2 if self.X_norm2 > 0 else 1.0
        self.Z = np.zeros((d, G))
        self.XZ = np.zeros((n, G))
        self.Z_prev = self.Z.copy()
        self.XZ_prev = self.XZ.copy()
        self.t = 1.0
        self.rho = float(rho) if self.cones else 0.0
        self.L = max(1.01 * self.L_data + self.rho * self.X_norm2, _TINY)
        self.Lam = np.zeros((n, G) if self.cones else (0, 0))
        self.iteration = 0
        self.outer = 0
        self.inner_tol = 1e-2
        self.violation_prev = -1.0  # none yet
        self._refresh()

    def _penalty_multipliers(self, XZ):
        """``Pi = [Lam - rho * S * XZ]_+`` (cones) or None."""
        if not self.cones:
            return None
        Pi = self.Lam - self.rho * (self.S * XZ)
        return np.maximum(Pi, 0.0, out=Pi)

    def _refresh(self):
        """Quantities derived from the state: objective, violation, the multiplier update."""
        self.Pi = self._penalty_multipliers(self.XZ)
        self._certify(self.XZ, self.Z, self.Pi)

    def _bregman(self, XZ_new, r_new, r_y, Pi_y):
        r"""Bregman divergence of the smooth part between ``Z_new`` and ``Y``, stably.

        Data: :math:`\tfrac12 \|r^+ - r_Y\|^2`. Penalty, per entry with
        :math:`a = \Lambda - \rho g` and :math:`p = [a]_+`:
        :math:`\tfrac{1}{2\rho}\big((p^+ - p)^2 + 2 p\, [-a^+]_+\big)`, the exact value
        of :math:`\tfrac{1}{2\rho}(p^{+2} - p^2) - p\,(a^+ - a)/\rho` without
        cancellation. Returns the value and ``Pi_new`` (cones).
        """
        dr = r_new - r_y
        value = 0.5 * float(dr @ dr)
        if not self.cones:
            return value, None
        a_new = self.Lam - self.rho * (self.S * XZ_new)
        Pi_new = np.maximum(a_new, 0.0)
        np.maximum(-a_new, 0.0, out=a_new)
        diff = Pi_new - Pi_y
        value += (0.5 / self.rho) * (
            float(np.einsum("ng,ng->", diff, diff)) + 2.0 * float(np.einsum("ng,ng->", Pi_y, a_new))
        )
        return value, Pi_new

    def iterate(self):
        """One FISTA iteration on the current (augmented) objective.

        Returns
        -------
        residual : float
            The composite-gradient residual :math:`L \\|Y - Z^+\\|_F`.
        """
        t_next = 0.5 * (1.0 + math.sqrt(1.0 + 4.0 * self.t * self.t))
        mom = (self.t - 1.0) / t_next
        if mom == 0.0:
            Y, XY = self.Z, self.XZ
        else:
            Y = self.Z + mom * (self.Z - self.Z_prev)
            XY = self.XZ + mom * (self.XZ - self.XZ_prev)
        Pi_y = self._penalty_multipliers(XY)
        r_y, Gamma = self._certify(XY, Y, Pi_y)  # the dual bound from Y
        while True:
            Z_new = block_soft_threshold(Y - Gamma / self.L, self.beta / self.L)
            XZ_new = self.X @ Z_new
            r_new = np.einsum("ng,ng->n", self.M, XZ_new) - self.y
            step = Z_new - Y
            step2 = float(np.einsum("dg,dg->", step, step))
            bregman, Pi_new = self._bregman(XZ_new, r_new, r_y, Pi_y)
            if bregman <= 0.5 * self.L * step2:
                break
            self.L *= 2.0
        # gradient restart (O'Donoghue & Candes 2015): <Y - Z+, Z+ - Z> > 0
        if float(np.einsum("dg,dg->", step, Z_new - self.Z)) < 0.0:
            t_next = 1.0
        self.Z_prev, self.XZ_prev = self.Z, self.XZ
        self.Z, self.XZ = Z_new, XZ_new
        self.t = t_next
        self.iteration += 1
        self.objective = 0.5 * float(r_new @ r_new) + self.beta * float(group_norms(Z_new).sum())
        if self.cones:
            self.violation = max(0.0, -float(np.min(self.S * XZ_new, initial=0.0)))
            self.Pi = Pi_new
        else:
            self.violation = 0.0
        return self.L * math.sqrt(step2)

    def step(self):
        """One outer iteration: a FISTA iteration (gated), an AL iteration (cones).

        Returns
        -------
        dict of float
            :meth:`report` after the iteration.
        """
        if not self.cones:
            self.iterate()
            return self.report()
        inner = 0
        while True:
            res = self.iterate()
            inner += 1
            if self.done or inner >= self.max_inner:
                break
            if res * float(np.linalg.norm(self.Z)) <= self.inner_tol * self.objective:
                break
        if not self.done:
            self.Lam = self.Pi
            self.t = 1.0  # a new objective: no momentum across multiplier updates
            self.Z_prev, self.XZ_prev = self.Z, self.XZ
            feasible = self.violation <= self.violation_tol * self.scale_y
            if 0.0 <= self.violation_prev < 4.0 * self.violation and not feasible:
                self.L += 9.0 * self.rho * self.X_norm2
                self.rho *= 10.0
            self.violation_prev = self.violation
            rel = max(
                self.gap / max(self.objective, _TINY), self.violation / max(self.scale_y, _TINY)
            )
            self.inner_tol = min(self.inner_tol, 0.1 * rel)
            self._refresh()
        self.outer += 1
        return self.report()

    @property
    def multipliers(self):
        """Cone multipliers ``(n, G)``: ``Pi``, the next multiplier update (cones)."""
        return self.Pi


# -------------------------------------------------------------------- interior point


def _jnorm(u):
    r""":math:`\sqrt{u_0^2 - \|u_1\|^2}` per column (0 off the cone), without cancellation."""
    tail = np.sqrt(np.einsum("ig,ig->g", u[1:], u[1:]))
    return np.sqrt(np.maximum((u[0] - tail) * (u[0] + tail), 0.0))


def _boost(v, u):
    r"""Columns of :math:`B(v) u`, the hyperbolic rotation taking ``e`` to ``v`` (``v^T J v = 1``).

    :math:`B(v) = \begin{pmatrix} v_0 & v_1^\top \\ v_1 & I + v_1 v_1^\top/(1+v_0)
    \end{pmatrix}`; :math:`B(v)^{-1} = B(Jv)`.
    """
    p = np.einsum("ig,ig->g", v[1:], u[1:])
    out = np.empty_like(u)
    out[0] = v[0] * u[0] + p
    out[1:] = u[0] * v[1:] + u[1:] + v[1:] * (p / (1.0 + v[0]))
    return out


def _boost_matrices(v):
    """``B(v)`` of :func:`_boost` for every column, shape (G, m, m)."""
    m, G = v.shape
    out = np.empty((G, m, m))
    out[:, 0, 0] = v[0]
    out[:, 0, 1:] = v[1:].T
    out[:, 1:, 0] = v[1:].T
    out[:, 1:, 1:] = (
        np.eye(m - 1)[None] + np.einsum("ig,jg->gij", v[1:], v[1:]) / (1.0 + v[0])[:, None, None]
    )
    return out


def _jordan(u, w):
    r"""Second-order-cone Jordan product :math:`(u^\top w,\ u_0 w_1 + w_0 u_1)` per column."""
    out = np.empty_like(u)
    out[0] = np.einsum("ig,ig->g", u, w)
    out[1:] = u[0] * w[1:] + w[0] * u[1:]
    return out


def _jordan_solve(v, r):
    r"""Solve :math:`v \circ x = r` per column (``v`` in the interior of the cone)."""
    den = v[0] ** 2 - np.einsum("ig,ig->g", v[1:], v[1:])
    out = np.empty_like(r)
    out[0] = (v[0] * r[0] - np.einsum("ig,ig->g", v[1:], r[1:])) / den
    out[1:] = (r[1:] - out[0] * v[1:]) / v[0]
    return out


def _soc_step(u, du):
    r"""Largest :math:`\alpha \ge 0` keeping every column of ``u + alpha du`` in the cone.

    With :math:`a = \Delta^\top J \Delta`, :math:`b = u^\top J \Delta`,
    :math:`c = u^\top J u > 0`, the boundary is the smallest positive root of
    :math:`a\alpha^2 + 2b\alpha + c`, written :math:`c / (-b + \sqrt{b^2 - ac})`
    (no cancellation); none (``inf``) when :math:`a \ge 0` and (:math:`b \ge 0` or
    :math:`b^2 < ac`).
    """
    a = du[0] ** 2 - np.einsum("ig,ig->g", du[1:], du[1:])
    b = u[0] * du[0] - np.einsum("ig,ig->g", u[1:], du[1:])
    c = _jnorm(u) ** 2
    disc = b * b - a * c
    hits = (a < 0) | ((b < 0) & (disc >= 0))
    denom = np.where(hits, -b + np.sqrt(np.maximum(disc, 0.0)), 1.0)
    alpha = np.where(hits, c / np.where(denom > 0, denom, _TINY), np.inf)
    return float(np.min(alpha, initial=np.inf))


def _orthant_step(u, du):
    """Largest ``alpha >= 0`` keeping ``u + alpha du >= 0`` (``u > 0``).

    ``1 / max(-du / u)``: one pass over the arrays, no masks (``inf`` when no
    entry decreases).
    """
    worst = float(np.max(-du / u, initial=0.0))
    return 1.0 / worst if worst > 0 else math.inf


class ConicInteriorPoint(_Engine):
    r"""Primal-dual interior point for the masked group lasso, with or without the cones.

    A plain object (not a plugin): :class:`InteriorPoint` and :func:`solve` drive it
    (module docstring). Its state is :meth:`state_dict`, so a solve resumes bit for
    bit.

    Parameters
    ----------
    X : ndarray, shape (n, d)
    y : ndarray, shape (n,)
    M : ndarray, shape (n, G)
        Signed masks (0 / +1 / -1), one column per group.
    beta : float
        Positive.
    cones : bool
        Impose ``S * (X @ Z) >= 0`` with ``S = 2 |M| - 1`` (rows of ``X`` that are
        zero give no constraint).
    tol : float
        Relative duality gap that certifies (at least 1e-7).
    violation_tol : float
        Largest cone violation allowed, relative to ``max |y|``.
    schur : {"auto", "direct", "pcg"}
        How the Newton systems are solved with the ``n x n`` Schur complement
        (exact form; the gated form always forms its closed form): ``"direct"``
        forms and factors it, ``"pcg"`` by preconditioned conjugate gradients
        (:mod:`plugins.convex._schur`) whenever its preconditioner is cheap,
        ``"auto"`` is ``"pcg"`` when ``n^2 P d > AUTO_PCG_WORK`` (module docstring).
    pcg_tau : float
        ``tau`` of :class:`plugins.convex._schur.SplitPreconditioner`.
    """

    _STATE = ("Z", "t", "XZ", "so", "lo", "lq", "dual_best", "iteration")
    #: smallest ``tol`` accepted: the certificate stalls near a relative gap of 1e-7
    MIN_TOL = 1e-7
    #: fraction of the step to the boundary taken
    STEP = 0.99
    #: relative regularisation of the diagonal blocks before their Cholesky factors
    REGULARIZATION = 1e-13
    #: largest block of F (bytes) formed at once
    CHUNK_BYTES = 32 * 2**20
    #: relative residual of the PCG Schur solves (it is the Newton system's: _schur)
    PCG_RTOL = 1e-10
    #: PCG iterations before a solve falls back to forming N
    PCG_MAX_ITER = 60
    #: schur="auto" uses PCG when n^2 P d (the multiply-adds of forming N) exceeds this
    AUTO_PCG_WORK = 1e9

    def __init__(
        self, X, y, M, beta, cones, tol=1e-6, violation_tol=1e-6, schur="auto", pcg_tau=3.0
    ):
        if tol < self.MIN_TOL:
            raise ConvexSolverError(f"interior_point needs tol >= {self.MIN_TOL}; got {tol}")
        if schur not in ("auto", "direct", "pcg"):
            raise ConvexSolverError(f"schur must be 'auto', 'direct' or 'pcg'; got {schur!r}")
        import scipy.linalg  # imported on first use: keeps start-up light

        self._linalg = scipy.linalg
        self._setup(X, y, M, beta, cones, tol, violation_tol)
        n, d = self.X.shape
        G = self.M.shape[1]
        m = d + 1
        # the distinct patterns |M_j| (n, P') and the pattern of each group (G,)
        self.patterns, self.pattern_of = np.unique(np.abs(self.M), axis=1, return_inverse=True)
        self.pattern_of = self.pattern_of.ravel()
        # each group's slot among the groups of its pattern (v_i: 0, w_i: 1)
        self._slot = np.zeros(G, dtype=int)
        seen = np.zeros(self.patterns.shape[1], dtype=int)
        for j, p in enumerate(self.pattern_of):
            self._slot[j] = seen[p]
            seen[p] += 1
        self._slots = int(seen.max(initial=1))
        n_c = 0
        if self.cones:
            nonzero = np.any(self.X != 0, axis=1)
            # constraint rows: those of non-zero points (a zero row constrains nothing)
            self.rows = slice(None) if nonzero.all() else np.flatnonzero(nonzero)
            self.Xc, self.Sc = self.X[self.rows], self.S[self.rows]
            n_c = self.Xc.shape[0]
            # the upper triangles of x_i x_i^T: X^T diag(w) X for every group is one
            # (G, n) x (n, d (d + 1) / 2) matmul
            iu = np.triu_indices(d)
            self.Xk = np.ascontiguousarray(self.Xc[:, iu[0]] * self.Xc[:, iu[1]])
            self._lower = (1 + iu[1]) * m + (1 + iu[0])  # flat (j, i) of the z block of B
        self.nu = G + n_c * G  # degree of the cone
        self.schur = schur
        P = self.patterns.shape[1]
        use_pcg = schur == "pcg" or (schur == "auto" and n * n * P * d > self.AUTO_PCG_WORK)
        self._pcg = (
            _schur.SplitPreconditioner(self.X, self.patterns, tau=pcg_tau)
            if self.cones and use_pcg
            else None
        )
        self.pcg_iterations = 0  # diagnostics (not state): PCG iterations so far
        self.schur_last = "direct"  # how the last iteration solved with N
        self.J = np.ones(m)
        self.J[1:] = -1.0
        # infeasible start: Z = 0, (t, 0) and (beta, 0) in the SOC interiors (the
        # t-part of the dual residual is zero throughout), s * lam = beta in the orthant
        self.Z = np.zeros((d, G))
        self.t = np.ones(G)
        self.XZ = np.zeros((n, G))
        self.lq = np.zeros((m, G))
        self.lq[0] = self.beta
        self.so = np.ones((n_c, G))
        self.lo = np.full((n_c, G), self.beta)
        self.iteration = 0
        self._refresh()

    def _refresh(self):
        """Residuals and the certificate at the current point."""
        r, Gamma = self._certify(self.XZ, self.Z, self.multipliers)
        self.rx = np.empty_like(self.lq)
        self.rx[0] = self.beta - self.lq[0]
        self.rx[1:] = Gamma - self.lq[1:]
        self.ro = self.so - self.Sc * self.XZ[self.rows] if self.cones else None

    @property
    def multipliers(self):
        """Cone multipliers ``(n, G)`` (zero rows of ``X``: 0), cones only."""
        if not self.cones:
            return None
        if isinstance(self.rows, slice):
            return self.lo
        Lam = np.zeros_like(self.XZ)
        Lam[self.rows] = self.lo
        return Lam

    def step(self):
        """One predictor-corrector iteration.

        Returns
        -------
        dict of float
            :meth:`report` after the iteration.

        Raises
        ------
        ConvexSolverError
            When the iteration cannot proceed (a block loses positive definiteness,
            a step is non-finite or vanishes): the numerical limit was reached
            before ``tol``.
        """
        X, M, cones = self.X, self.M, self.cones
        d, G = self.Z.shape
        m = d + 1
        sq = np.vstack([self.t[None], self.Z])
        mu = float(np.einsum("ig,ig->", sq, self.lq))
        if cones:
            mu += float(np.einsum("ng,ng->", self.so, self.lo))
        mu /= self.nu
        # Nesterov-Todd scaling: orthant (diagonal), SOC (W = eta B(v))
        sn, ln = _jnorm(sq), _jnorm(self.lq)
        if not (np.all(sn > 0) and np.all(ln > 0)):
            raise self._stalled("a point left the cone interior")
        sb, lb = sq / sn, self.lq / ln
        gamma = np.sqrt(0.5 * (1.0 + np.einsum("ig,ig->g", sb, lb)))
        v = (sb + self.J[:, None] * lb) / (2.0 * gamma)
        eta = np.sqrt(sn / ln)
        Jv = self.J[:, None] * v
        zq = eta * _boost(v, self.lq)  # the scaled point W lam = W^-1 s
        W_inv = _boost_matrices(Jv) / eta[:, None, None]
        W_inv2 = W_inv @ W_inv  # (G, m, m), positive semi-definite as computed
        if cones:
            B = W_inv2.copy()
            Dinv = self.lo / self.so
            wo = np.sqrt(self.so / self.lo)
            zo = np.sqrt(self.so * self.lo)
            # X^T diag(Dinv_j) X into the lower triangles (all the Cholesky reads)
            B.reshape(G, m * m)[:, self._lower] += Dinv.T @ self.Xk
            diag = np.einsum("gii->gi", B)
            diag += self.REGULARIZATION * diag.max(axis=1, keepdims=True)
            try:
                L = np.linalg.cholesky(B)
            except np.linalg.LinAlgError:
                raise self._stalled("a Newton block is not positive definite") from None
            L_inv = self._triangular_inverses(L)  # lower: B^-1 = L_inv^T L_inv
        # N = I + sum_j (M_j * X) C_j (M_j * X)^T with C_j = [B_j^-1]_zz = K_j^T K_j,
        # K_j = L_inv_j[:, 1:] (m, d), grouped by pattern: K (P, slots, m, d)
        if cones:
            P = self.patterns.shape[1]
            K = np.zeros((P, self._slots, m, d))
            K[self.pattern_of, self._slot] = L_inv[:, :, 1:]
            schur_solve = self._schur_solver(K)
        else:
            schur_solve = self._cholesky_solver(self._gated_schur(X, M, v, eta))

        def block_solve(b):  # B^-1 b per column, b (m, G)
            if not cones:  # B^-1 = W^2 = eta^2 (2 v v^T - J), exactly
                out = 2.0 * v * np.einsum("ig,ig->g", v, b)
                out[0] -= b[0]
                out[1:] += b[1:]
                return out * (eta * eta)
            u = np.matmul(L_inv, b.T[:, :, None])
            return np.matmul(np.transpose(L_inv, (0, 2, 1)), u)[:, :, 0].T

        def newton_solve(rhs):  # (A^T A + blkdiag B)^-1 rhs by the Woodbury identity
            y1 = block_solve(rhs)
            u = np.einsum("ng,ng->n", M, X @ y1[1:])
            w = schur_solve(u)
            b2 = np.zeros_like(rhs)
            b2[1:] = X.T @ (M * w[:, None])
            return y1 - block_solve(b2)

        def direction(dco, dcq):
            Winv_dcq = np.matmul(W_inv, dcq.T[:, :, None])[:, :, 0].T
            rhs = -self.rx + Winv_dcq
            if cones:
                rhs[1:] += self.Xc.T @ (self.Sc * (Dinv * (self.ro + wo * dco)))
            dx = newton_solve(rhs)
            XdZ = X @ dx[1:]
            dlq = -np.matmul(W_inv2, dx.T[:, :, None])[:, :, 0].T + Winv_dcq
            dso = dlo = None
            if cones:
                dlo = Dinv * (self.ro + wo * dco - self.Sc * XdZ[self.rows])
                dso = wo * (dco - wo * dlo)
            return dx, XdZ, dlq, dso, dlo

        def max_step(dx, dlq, dso, dlo):
            alpha = min(_soc_step(sq, dx), _soc_step(self.lq, dlq))
            if cones:
                alpha = min(alpha, _orthant_step(self.so, dso), _orthant_step(self.lo, dlo))
            return alpha

        # predictor (affine scaling): d_c = -(scaled point)
        dx, XdZ, dlq, dso, dlo = direction(-zo if cones else None, -zq)
        alpha = min(1.0, max_step(dx, dlq, dso, dlo))
        mu_aff = float(np.einsum("ig,ig->", sq + alpha * dx, self.lq + alpha * dlq))
        if cones:
            mu_aff += float(np.einsum("ng,ng->", self.so + alpha * dso, self.lo + alpha * dlo))
        sigma = (max(mu_aff, 0.0) / (mu * self.nu)) ** 3
        # corrector: d_c = v^-1 o (-v o v + sigma mu e - (W^-T ds_aff) o (W dlam_aff))
        e = np.zeros((m, G))
        e[0] = 1.0

        def corrected(dx, dlq, dso, dlo):
            scaled_ds = np.matmul(W_inv, dx.T[:, :, None])[:, :, 0].T
            scaled_dl = eta * _boost(v, dlq)
            rcq = -_jordan(zq, zq) + sigma * mu * e - _jordan(scaled_ds, scaled_dl)
            dcq = _jordan_solve(zq, rcq)
            dco = None
            if cones:
                dco = (-zo * zo + sigma * mu - dso * dlo) / zo
            new = direction(dco, dcq)
            return new, min(1.0, self.STEP * max_step(*new[:1], *new[2:]))

        (dx, XdZ, dlq, dso, dlo), alpha = corrected(dx, dlq, dso, dlo)
        if not (np.isfinite(alpha) and alpha > 1e-12 and np.all(np.isfinite(dx))):
            raise self._stalled(f"step length {alpha:.3g}")
        self.t = self.t + alpha * dx[0]
        self.Z = self.Z + alpha * dx[1:]
        self.XZ = self.XZ + alpha * XdZ
        self.lq = self.lq + alpha * dlq
        if cones:
            self.so = self.so + alpha * dso
            self.lo = self.lo + alpha * dlo
        self.iteration += 1
        self._refresh()
        return self.report()

    def _triangular_inverses(self, L):
        """Inverses of the lower-triangular ``L`` (G, m, m), by LAPACK's ``dtrtri``.

        ``m^3 / 3`` multiply-adds each (``np.linalg.inv``, an LU solve, takes twice
        as long: 10 ms against 24 ms for 400 blocks of 51). Each ``L_j^T`` (the
        Fortran-ordered view of a C-ordered ``L_j``) is inverted as an upper
        triangle, so nothing is copied.
        """
        trtri = self._linalg.lapack.dtrtri
        out = np.empty_like(L)
        for j in range(L.shape[0]):
            inv, info = trtri(L[j].T, lower=0)
            if info != 0:
                raise self._stalled("a Newton block is singular")
            out[j] = inv.T
        return out

    def _schur_direct(self, K):
        r"""Form ``N = I + F F^T`` (exact form) from the pattern blocks ``K`` (P, slots, m, d).

        The groups of one pattern (``v_i`` and ``w_i``) are merged through a QR
        factorisation of their stacked ``K_j`` (a Gram form: no squared condition
        number), giving ``F_p = (|M_p| * X) T_p`` with ``T_p`` (d, c); ``F`` is formed
        in chunks of ``CHUNK_BYTES``.
        """
        X = self.X
        n, d = X.shape
        P, slots, m, _ = K.shape
        if slots == 1:
            T = K[:, 0]  # (P, m, d): T_p^T
        else:
            T = np.linalg.qr(K.reshape(P, slots * m, d), mode="r")  # (P, d, d)
        c = T.shape[1]
        T = np.transpose(T, (2, 0, 1))  # (d, P, c): T_p = T[:, p]
        N = np.eye(n)
        chunk = max(1, self.CHUNK_BYTES // (8 * n * c))
        for first in range(0, P, chunk):
            last = min(P, first + chunk)
            F = (X @ T[:, first:last].reshape(d, -1)).reshape(n, last - first, c)
            F *= self.patterns[:, first:last, None]
            F = F.reshape(n, -1)
            N += F @ F.T
        return N

    def _cholesky_solver(self, N):
        """``u -> N^-1 u`` by a Cholesky factorisation of ``N`` (overwritten)."""
        try:
            factor = self._linalg.cho_factor(N, lower=True, overwrite_a=True, check_finite=False)
        except np.linalg.LinAlgError:
            raise self._stalled("the Schur complement is not positive definite") from None
        return lambda u: self._linalg.cho_solve(factor, u, check_finite=False)

    def _schur_solver(self, K):
        """``u -> N^-1 u`` for this iteration (exact form): PCG or a Cholesky factor of ``N``.

        With ``schur="pcg"`` (or ``"auto"`` where it pays) and a preconditioner of
        rank at most ``max_rank_fraction * P d`` (:mod:`plugins.convex._schur`), the
        solves are matrix-free PCG to a relative residual ``PCG_RTOL``; a solve that
        does not converge in ``PCG_MAX_ITER`` iterations switches this iteration to
        the direct path (``N`` formed and factored), so every solve is accurate.
        """
        self.schur_last = "direct"
        if self._pcg is None:
            return self._cholesky_solver(self._schur_direct(K))
        C = _schur.pattern_blocks(K, K.shape[0])
        pre = self._pcg.build(C)
        if pre is None:
            return self._cholesky_solver(self._schur_direct(K))
        self.schur_last = "pcg"
        X, pats = self.X, self.patterns
        direct = []

        def solve(u):
            if not direct:
                w, its, ok = _schur.pcg(
                    lambda v: _schur.schur_matvec(X, pats, C, v),
                    pre,
                    u,
                    self.PCG_RTOL,
                    self.PCG_MAX_ITER,
                )
                self.pcg_iterations += its
                if ok:
                    return w
                self.schur_last = "pcg-fallback"
                direct.append(self._cholesky_solver(self._schur_direct(K)))
            return direct[0](u)

        return solve

    def _gated_schur(self, X, M, v, eta):
        r"""``N`` without cones in closed form: ``4 n^2 G`` flops instead of ``2 n^2 G (d + 1)``.

        Without the cone constraints :math:`B_j = W_j^{-2}`, so :math:`[B_j^{-1}]_{zz}
        = [W_j^2]_{zz} = \eta_j^2 (I + 2 v_j v_j^\top)` (``v_j`` the tail of the NT
        scaling point; the module :mod:`plugins.convex._basis_pursuit` uses the same
        identity): :math:`N = I + (X X^\top) \odot (M\, \mathrm{diag}(\eta^2) M^\top) +
        Q Q^\top` with :math:`Q = \sqrt2\, \eta \odot (M \odot X V)`; the block
        solves use the same :math:`W_j^2` (no block factorisation, no regularisation:
        the Woodbury identity holds with the same blocks on both sides).
        """
        if getattr(self, "_gram", None) is None:
            self._gram = X @ X.T
        Q = (M * (X @ v[1:])) * (math.sqrt(2.0) * eta)
        N = self._gram * ((M * (eta * eta)) @ M.T)
        N += Q @ Q.T
        N[np.diag_indices_from(N)] += 1.0
        return N

    def _stalled(self, why):
        return ConvexSolverError(
            f"interior_point stopped at iteration {self.iteration} ({why}) with relative "
            f"gap {self.gap / max(self.objective, _TINY):.2e} (tol {self.tol:g}) and "
            f"violation {self.violation:.2e}: the numerical limit; loosen tol"
        )


# ----------------------------------------------------------------- functions and plugins

_ENGINES = {"first_order": GroupLassoAPG, "interior_point": ConicInteriorPoint}


def _engine(method, program_arrays, **options):
    X, y, masks, beta, cones, signs = program_arrays
    M, layout = signed_masks(masks, cones, signs)
    engine = _ENGINES[method](X, y, M, beta, cones, **options)
    return engine, layout


def solve(
    X,
    y,
    masks,
    beta,
    cones=True,
    signs=None,
    method="interior_point",
    tol=1e-6,
    violation_tol=1e-6,
    max_iter=None,
    **options,
):
    """Solve the convex program to a certified relative duality gap ``tol``.

    Parameters
    ----------
    X : ndarray, shape (n, d)
    y : ndarray, shape (n,)
    masks : ndarray of bool, shape (n, P)
    beta : float
        Positive.
    cones : bool
    signs : ndarray of int, shape (P,), or None
    method : {"interior_point", "first_order"}
    tol, violation_tol : float
    max_iter : int or None
        Cap on steps (outer iterations); None: 100 (interior point), 100000.
    **options
        ``max_inner`` and ``rho`` of :class:`GroupLassoAPG`; ``schur`` and
        ``pcg_tau`` of :class:`ConicInteriorPoint`.

    Returns
    -------
    V, Wn : ndarray, shape (d, P)
    log : dict
        ``objective``, ``gap``, ``violation``, ``iterations`` (FISTA iterations or
        interior-point iterations), ``dual`` (a lower bound on the optimum),
        ``converged``, ``steps``, and with cones ``multipliers`` (``(lam, mu)``,
        (n, P) each, for :func:`plugins.convex._program.duality_gap`).
    """
    masks = np.asarray(masks, dtype=bool)
    engine, layout = _engine(
        method,
        (X, y, masks, beta, cones, signs),
        tol=tol,
        violation_tol=violation_tol,
        **options,
    )
    if max_iter is None:
        max_iter = 100 if method == "interior_point" else 100000
    return run_engine(engine, masks, layout, signs, cones, max_iter)


def run_engine(engine, masks, layout, signs, cones, max_iter):
    """Step ``engine`` until it is done or ``max_iter`` steps; its groups and log.

    Returns ``(V, Wn, log)`` as :func:`solve` describes.
    """
    steps = 0
    while not engine.done and steps < max_iter:
        engine.step()
        steps += 1
    V, Wn = split_groups(masks, engine.Z, engine.XZ, layout, signs)
    log = engine.report()
    log.update(dual=engine.dual_best, converged=engine.done, steps=steps)
    if cones:
        log["multipliers"] = _multipliers(engine.multipliers, masks.shape[1], layout, signs)
    return V, Wn, log


class _IterativeSolver(Solver):
    """A :class:`core.components.Solver` stepping one engine of this module."""

    method = None

    def start(self, program):
        """Set up for a :class:`plugins.convex._program.ConvexProgram` (nothing solved)."""
        self.program = program
        self.engine, self.layout = _engine(
            self.method,
            (program.X, program.y, program.masks, program.beta, program.cones, program.signs),
            **self._options(),
        )

    def _options(self):
        return {"tol": self.tol, "violation_tol": self.violation_tol}

    def step(self):
        """One outer iteration: ``objective``, ``gap``, ``violation``, ``iterations``."""
        if self.engine.done:
            return self.engine.report()
        return self.engine.step()

    @property
    def done(self):
        return self.engine.done

    def solution(self):
        """``V``, ``Wn`` (d, P); with cones also the multipliers ``lam``, ``mu`` (n, P)."""
        e, prog = self.engine, self.program
        V, Wn = split_groups(prog.masks, e.Z, e.XZ, self.layout, prog.signs)
        out = {"V": V, "Wn": Wn}
        if prog.cones:
            out["lam"], out["mu"] = _multipliers(
                e.multipliers, prog.n_patterns, self.layout, prog.signs
            )
        return out

    def state_dict(self):
        return self.engine.state_dict()

    def load_state_dict(self, state):
        self.engine.load_state_dict(state)


_TOLERANCES = (
    Param(
        "tol",
        float,
        1e-6,
        "certified relative duality gap: stop when gap <= tol * objective",
        low=0,
        low_open=True,
        resume_safe=True,
    ),
    Param(
        "violation_tol",
        float,
        1e-6,
        "largest cone violation allowed, relative to max|y| (exact form)",
        low=0,
        resume_safe=True,
    ),
)


class FirstOrder(_IterativeSolver):
    """FISTA (gated) and an augmented Lagrangian with FISTA inner solves (cones), certified.

    See :mod:`plugins.convex._first_order`. A step is one FISTA iteration (gated)
    or one augmented-Lagrangian iteration (cones).
    """

    name = "first_order"
    method = "first_order"
    params = _TOLERANCES + (
        Param(
            "max_inner",
            int,
            1000,
            "cap on FISTA iterations per augmented-Lagrangian iteration (cones)",
            low=1,
        ),
        Param(
            "rho",
            float,
            None,
            "initial augmented-Lagrangian penalty (None: ||A||^2 / ||X||^2)",
            low=0,
            low_open=True,
            nullable=True,
        ),
    )

    def _options(self):
        return {**super()._options(), "max_inner": self.max_inner, "rho": self.rho}


class InteriorPoint(_IterativeSolver):
    """Primal-dual interior point (NT scaling, Mehrotra) with structured Newton solves, certified.

    See :mod:`plugins.convex._first_order`. A step is one predictor-corrector
    iteration (about 25-40 to a relative gap of 1e-6).
    """

    name = "interior_point"
    method = "interior_point"
    params = (
        Param(
            "tol",
            float,
            1e-6,
            "certified relative duality gap: stop when gap <= tol * objective",
            low=ConicInteriorPoint.MIN_TOL,
            resume_safe=True,
        ),
        _TOLERANCES[1],
        Param(
            "schur",
            str,
            "auto",
            "Newton solves with the n x n Schur complement (exact form): 'direct' forms and "
            "factors it, 'pcg' solves by preconditioned CG, 'auto' picks pcg when "
            "n^2 P d > 1e9",
            choices=("auto", "direct", "pcg"),
            resume_safe=True,
        ),
    )

    def _options(self):
        return {**super()._options(), "schur": self.schur}
