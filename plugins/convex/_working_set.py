r"""Working sets of groups: solve on a few groups, certify over all of them.

At an optimum of the (masked) group lasso of :mod:`plugins.convex._first_order`
many groups are zero. A *working-set* solve runs the certified interior point
(:class:`plugins.convex._first_order.ConicInteriorPoint`) on the groups of a working
set :math:`\mathcal W` only (the others held at zero), then checks every excluded
group exactly and adds those that violate their optimality condition; it repeats
until none does.

Optimality of a zero group
    With :math:`\nabla_j = X^\top (M_{:j} \odot r)` the gradient of the data term
    with respect to :math:`z_j` (``r`` the residual) and, with cones,
    :math:`K_j = \{z : S_{:j} \odot X z \ge 0\}`, a zero group is optimal iff
    :math:`0 \in \nabla_j + \beta\, \partial\|\cdot\|(0) + N_{K_j}(0)`, i.e. iff
    :math:`\|\Pi_{K_j}(-\nabla_j)\| \le \beta` (Moreau: the distance of
    :math:`-\nabla_j` to the polar cone :math:`K_j^\circ = \{-A_j^\top \lambda,
    \lambda \ge 0\}`, :math:`A_j = \mathrm{diag}(S_{:j}) X`). That distance is

    .. math::

        \rho_j = \min_{\lambda \ge 0} \big\| \nabla_j - X^\top (S_{:j} \odot \lambda) \big\|,

    a non-negative least-squares problem in ``n`` unknowns and ``d`` equations
    (:func:`polar_distance`, exact: Lawson-Hanson via :func:`scipy.optimize.nnls`);
    without cones :math:`\rho_j = \|\nabla_j\|`. Any :math:`\lambda \ge 0` gives an
    upper bound; :func:`polar_bounds` computes such bounds for many groups at once by
    accelerated projected gradient (two ``(n, d) x (d, J)`` matmuls an iteration),
    and the exact NNLS is run only for the groups whose bound does not settle the
    question.

Certificate over the full problem
    The dual point is the one of :mod:`plugins.convex._first_order`,
    :math:`(\theta, \Lambda) = s\,(r, \Pi)`, with :math:`\Pi` the interior point's
    cone multipliers on :math:`\mathcal W` and the minimisers :math:`\lambda` above on
    the excluded groups: dual feasible for every group when :math:`s \le \beta /
    \max_j \|\Gamma_j\|` over *all* ``G`` groups (:math:`\|\Gamma_j\| = \rho_j`, or
    its upper bound, for excluded ones). The recorded ``gap`` is the objective minus
    the best such dual value: a bound on the suboptimality in the full program.

Rounds
    The first working set holds the groups with the largest bounds at ``Z = 0``
    (``initial`` of them, default ``max(8, G // 8)``); each round adds the violating
    groups with the largest :math:`\rho_j`, at most as many as the working set holds
    (the set at most doubles), and restarts the interior point (cold: interior points
    do not warm-start). A round's interior point runs to a relative gap of
    ``ROUND_TOL`` (1e-2: enough to find the violators); when none is left the same
    interior point goes on (warm) to ``tol / 2``, so that the full certificate can
    reach ``tol``. The solve ends when the full certificate reaches ``tol``; when no
    excluded group violates its condition by more than rounding but the certificate
    is short of ``tol`` (the numerical limit), every group is added.

When it pays (measured: so far, never on the benchmark's problems)
    Only when few groups are non-zero at the optimum *and* the rounds are few: each
    round restarts the interior point cold (20-40 iterations), and an iteration on
    ``k`` of ``G`` groups costs about ``k / G`` of a full one only where the ``n x n``
    Schur complement dominates (large ``n``).
    At ``beta = 1e-3 ||X^T y||_inf`` (the issue's benchmark) 148 of 200 groups (95 of
    100 patterns) are non-zero at (300, 20, 100) and 313 of 400 at (1000, 50, 200):
    the working set ends up holding nearly every group (CPU time 5.0 s against 1.19
    s for the interior point at (300, 20, 100)). With ``beta`` 100 times larger (21
    of 200 and about 100 of 400 groups non-zero) it still loses: 2.5 s against 0.71
    s, and 48 s against 20 s at (1000, 50, 200) (3 rounds, 139 iterations against
    28). It is kept for its certificate (each group left out tested exactly, the gap
    over every group) and as the frame for a warm-startable inner solver.

One :meth:`WorkingSetEngine.step` is one interior-point iteration; the check of the
excluded groups runs in the step that finishes a round. The state
(:meth:`WorkingSetEngine.state_dict`) is the working set, the inner engine's state
and the certificate so far, so a solve resumes bit for bit.
"""

import math

import numpy as np

from core.params import Param

from ._first_order import (
    ConicInteriorPoint,
    _IterativeSolver,
    group_norms,
    run_engine,
    scaled_dual,
    signed_masks,
)

__all__ = [
    "WorkingSet",
    "WorkingSetEngine",
    "polar_distance",
    "polar_bounds",
    "solve_working_set",
]

_TINY = np.finfo(float).tiny


def polar_distance(X, orientation, grad):
    r"""Exact :math:`\min_{\lambda \ge 0} \|\nabla - X^\top (s \odot \lambda)\|` of one group.

    It is :math:`\|\Pi_K(-\nabla)\|` for the cone :math:`K = \{z : s \odot X z \ge
    0\}` (module docstring).

    Parameters
    ----------
    X : ndarray, shape (n, d)
    orientation : ndarray, shape (n,)
        The group's ``s`` (+1 / -1).
    grad : ndarray, shape (d,)

    Returns
    -------
    rho : float
    lam : ndarray, shape (n,)
        The minimiser (non-negative).
    """
    from scipy.optimize import nnls

    A = (orientation[:, None] * X).T  # (d, n)
    lam, rho = nnls(A, np.asarray(grad, dtype=float), maxiter=50 * X.shape[0])
    return float(rho), lam


def polar_bounds(X, S, B, iters=200, rtol=1e-9):
    r"""Upper bounds on :math:`\rho_j` for the columns of ``B``, with their multipliers.

    Accelerated projected gradient (FISTA with gradient restart) on
    :math:`\tfrac12 \|b_j - X^\top (S_{:j} \odot \lambda_j)\|^2` over
    :math:`\lambda_j \ge 0`, all columns at once, step :math:`1/\|X\|_2^2`, from
    :math:`\lambda = 0`.

    Parameters
    ----------
    X : ndarray, shape (n, d)
    S : ndarray, shape (n, J)
        Orientations (+1 / -1) of the groups.
    B : ndarray, shape (d, J)
        The gradients :math:`\nabla_j`.
    iters : int
        Most iterations.
    rtol : float
        Stop when no bound moved by more than ``rtol`` (relative) in an iteration.

    Returns
    -------
    bounds : ndarray, shape (J,)
        :math:`\|b_j - X^\top (S_{:j} \odot \lambda_j)\| \ge \rho_j` at the returned
        multipliers.
    Lam : ndarray, shape (n, J)
        Non-negative multipliers.
    """
    n, J = S.shape
    Lam = np.zeros((n, J))
    if J == 0:
        return np.zeros(0), Lam
    L = max(float(np.linalg.norm(X, 2)) ** 2, _TINY)
    Y, prev, t = Lam, Lam, 1.0
    bounds = group_norms(B)  # at lambda = 0
    for _ in range(iters):
        R = B - X.T @ (S * Y)
        Lam_new = np.maximum(Y + (S * (X @ R)) / L, 0.0)
        t_next = 0.5 * (1.0 + math.sqrt(1.0 + 4.0 * t * t))
        if float(np.einsum("nj,nj->", Y - Lam_new, Lam_new - Lam)) > 0.0:
            t_next = 1.0  # restart (O'Donoghue & Candes)
        prev, Lam = Lam, Lam_new
        Y = Lam + ((t - 1.0) / t_next) * (Lam - prev)
        t = t_next
        new = group_norms(B - X.T @ (S * Lam))  # valid at every iterate
        moved = np.max(np.abs(new - bounds) / np.maximum(new, _TINY), initial=0.0)
        bounds = new
        if moved <= rtol:
            break
    return bounds, Lam


class WorkingSetEngine:
    """Certified interior point on a working set of groups (module docstring).

    A plain object like the engines of :mod:`plugins.convex._first_order`
    (``step``, ``done``, ``report``, ``state_dict``); :class:`WorkingSet` and
    :func:`solve_working_set` drive it.

    Parameters
    ----------
    X : ndarray, shape (n, d)
    y : ndarray, shape (n,)
    M : ndarray, shape (n, G)
        Signed masks (0 / +1 / -1), one column per group.
    beta : float
        Positive.
    cones : bool
    tol : float
        Relative duality gap of the full program that certifies (at least
        ``2 * ConicInteriorPoint.MIN_TOL``).
    violation_tol : float
    initial : int or None
        Size of the first working set (None: ``max(8, G // 8)``).
    """

    _STATE = ("ws", "rounds", "dual_best", "iteration", "Lam_out")
    #: a bound this close to beta (relative) is settled by the exact NNLS
    AMBIGUOUS = 1e-3
    #: relative gap of the inner solves of the rounds that look for violators
    ROUND_TOL = 1e-2

    def __init__(self, X, y, M, beta, cones, tol=1e-6, violation_tol=1e-6, initial=None):
        self.X = np.ascontiguousarray(X, dtype=float)
        self.y = np.asarray(y, dtype=float)
        self.M = np.ascontiguousarray(M, dtype=float)
        self.beta = float(beta)
        self.cones = bool(cones)
        self.tol = float(tol)
        self.violation_tol = float(violation_tol)
        self.inner_tol = 0.5 * self.tol
        if self.inner_tol < ConicInteriorPoint.MIN_TOL:
            from ._program import ConvexSolverError

            raise ConvexSolverError(
                f"working_set needs tol >= {2 * ConicInteriorPoint.MIN_TOL}; got {tol}"
            )
        self.S = 2.0 * np.abs(self.M) - 1.0
        self.scale_y = float(np.max(np.abs(self.y), initial=0.0))
        G = self.M.shape[1]
        self.Lam_out = np.zeros((self.X.shape[0], G) if self.cones else (0, 0))
        self.dual_best = 0.0
        self.iteration = 0
        self.rounds = 0
        # the first working set: the largest bounds at Z = 0 (residual -y)
        rho, _ = self._bounds(-self.y, np.arange(G))
        k = min(G, max(8, G // 8) if initial is None else int(initial))
        order = np.argsort(-rho, kind="stable")
        self.ws = np.zeros(G, dtype=bool)
        self.ws[order[:k]] = True
        self.round_tol = max(self.ROUND_TOL, self.inner_tol)
        self._new_inner(self.round_tol)
        self._finished = False

    # ----------------------------------------------------------- pieces

    def _bounds(self, r, groups):
        """Upper bounds on rho_j (exact without cones) and multipliers, for ``groups``."""
        B = self.X.T @ (self.M[:, groups] * r[:, None])
        if not self.cones:
            return group_norms(B), None
        return polar_bounds(self.X, self.S[:, groups], B)

    def _new_inner(self, tol):
        self.inner = ConicInteriorPoint(
            self.X,
            self.y,
            self.M[:, self.ws],
            self.beta,
            self.cones,
            tol=tol,
            violation_tol=self.violation_tol,
        )

    @property
    def Z(self):
        """Group variables ``(d, G)``: the inner solution, zero off the working set."""
        Z = np.zeros((self.X.shape[1], self.M.shape[1]))
        Z[:, self.ws] = self.inner.Z
        return Z

    @property
    def XZ(self):
        """``X @ Z``, shape (n, G)."""
        XZ = np.zeros((self.X.shape[0], self.M.shape[1]))
        XZ[:, self.ws] = self.inner.XZ
        return XZ

    @property
    def multipliers(self):
        """Cone multipliers ``(n, G)``: the inner ones on the working set, the pricing ones off."""
        if not self.cones:
            return None
        Lam = self.Lam_out.copy()
        Lam[:, self.ws] = self.inner.multipliers
        return Lam

    @property
    def objective(self):
        return self.inner.objective

    @property
    def violation(self):
        return self.inner.violation

    @property
    def gap(self):
        """Objective minus the best dual value of the *full* program met so far."""
        return self.objective - self.dual_best

    @property
    def done(self):
        return self._finished

    def _check(self):
        """Price the excluded groups, update the full certificate; the violators (indices)."""
        e = self.inner
        r = np.einsum("ng,ng->n", e.M, e.XZ) - self.y
        Phi = e.M * r[:, None]
        if self.cones:
            Phi -= e.S * e.multipliers
        norms = np.zeros(self.M.shape[1])
        norms[self.ws] = group_norms(self.X.T @ Phi)
        out = np.flatnonzero(~self.ws)
        if out.size:
            rho, Lam = self._bounds(r, out)
            if self.cones:
                self.Lam_out[:, out] = Lam
                unsure = np.flatnonzero(np.abs(rho - self.beta) <= self.AMBIGUOUS * self.beta)
                for i in unsure:  # settled exactly (Lawson-Hanson)
                    j = out[i]
                    grad = self.X.T @ (self.M[:, j] * r)
                    rho[i], self.Lam_out[:, j] = polar_distance(self.X, self.S[:, j], grad)
            norms[out] = rho
        dual = scaled_dual(r, self.y, norms, self.beta)
        self.dual_best = max(self.dual_best, dual)
        if self.ws.all():  # the inner program is the full one: its bound is the full one's
            self.dual_best = max(self.dual_best, self.inner.dual_best)
        worst = norms[out] if out.size else np.zeros(0)
        violators = out[worst > self.beta * (1.0 + 1e-9)]
        return violators[np.argsort(-norms[violators], kind="stable")]

    # ----------------------------------------------------------- stepping

    def step(self):
        """One interior-point iteration; at the end of a round, the check and the next round.

        Returns
        -------
        dict of float
            :meth:`report`.
        """
        if self._finished:
            return self.report()
        if not self.inner.done:
            self.inner.step()
            self.iteration += 1
        if self.inner.done:
            violators = self._check()
            certified = self.gap <= self.tol * self.objective
            if certified and self.violation <= self.violation_tol * self.scale_y:
                self._finished = True
            elif violators.size:  # the next round
                self.ws[violators[: max(1, int(self.ws.sum()))]] = True
                self.rounds += 1
                self._new_inner(self.round_tol)
            elif self.inner.tol > self.inner_tol:  # the last round: on to the tight tol
                self.inner.tol = self.inner_tol
            elif not self.ws.all():  # short of tol outside by rounding only: all groups
                self.ws[:] = True
                self.rounds += 1
                self._new_inner(self.inner_tol)
            else:  # every group is in and the inner solve is done: its certificate
                self._finished = True
        return self.report()

    def report(self):
        """``objective``, ``gap`` (full), ``violation``, ``iterations``, set size, rounds."""
        return {
            "objective": float(self.objective),
            "gap": float(self.gap),
            "violation": float(self.violation),
            "iterations": float(self.iteration),
            "working_set": float(self.ws.sum()),
            "rounds": float(self.rounds),
        }

    def state_dict(self):
        """The working set, the certificate so far and the inner engine's state (``inner_*``)."""
        state = {k: getattr(self, k) for k in self._STATE}
        state = {k: v.copy() if isinstance(v, np.ndarray) else v for k, v in state.items()}
        state["finished"] = self._finished
        state["inner_tol_now"] = self.inner.tol
        state.update({f"inner_{k}": v for k, v in self.inner.state_dict().items()})
        return state

    def load_state_dict(self, state):
        self.ws = np.array(state["ws"], dtype=bool)
        self.rounds = int(state["rounds"])
        self.iteration = int(state["iteration"])
        self.Lam_out = np.array(state["Lam_out"], dtype=float).reshape(self.Lam_out.shape)
        self._new_inner(float(state["inner_tol_now"]))
        inner = {
            k[6:]: v for k, v in state.items() if k.startswith("inner_") and k[6:] != "tol_now"
        }
        self.inner.load_state_dict(inner)
        self.dual_best = float(state["dual_best"])
        # a resume may lower tol (resume-safe): finished only if certified at the new one
        self._finished = bool(state["finished"]) and self.gap <= self.tol * self.objective


def solve_working_set(X, y, masks, beta, cones=True, signs=None, tol=1e-6, max_iter=2000, **opts):
    """Solve the convex program on working sets, certified over all groups.

    Parameters
    ----------
    X : ndarray, shape (n, d)
    y : ndarray, shape (n,)
    masks : ndarray of bool, shape (n, P)
    beta : float
    cones : bool
    signs : ndarray of int, shape (P,), or None
    tol : float
    max_iter : int
        Most interior-point iterations over all rounds.
    **opts
        ``violation_tol``, ``initial`` of :class:`WorkingSetEngine`.

    Returns
    -------
    V, Wn : ndarray, shape (d, P)
    log : dict
        :meth:`WorkingSetEngine.report` plus ``dual``, ``converged``, ``steps`` and
        with cones ``multipliers`` (``(lam, mu)``, (n, P) each) for every group.
    """
    masks = np.asarray(masks, dtype=bool)
    M, layout = signed_masks(masks, cones, signs)
    engine = WorkingSetEngine(X, y, M, beta, cones, tol=tol, **opts)
    return run_engine(engine, masks, layout, signs, cones, max_iter)


class WorkingSet(_IterativeSolver):
    """The interior point on working sets of groups, certified over all groups.

    See :mod:`plugins.convex._working_set`. A step is one interior-point iteration
    (the check of the excluded groups runs in the step that ends a round).
    """

    name = "working_set"
    params = (
        Param(
            "tol",
            float,
            1e-6,
            "certified relative duality gap of the full program",
            low=2 * ConicInteriorPoint.MIN_TOL,
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
        Param(
            "initial",
            int,
            None,
            "groups in the first working set (None: max(8, G // 8))",
            low=1,
            nullable=True,
        ),
    )

    def start(self, program):
        self.program = program
        M, self.layout = signed_masks(program.masks, program.cones, program.signs)
        self.engine = WorkingSetEngine(
            program.X,
            program.y,
            M,
            program.beta,
            program.cones,
            tol=self.tol,
            violation_tol=self.violation_tol,
            initial=self.initial,
        )
