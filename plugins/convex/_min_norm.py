r"""Minimum-norm interpolation with a skip connection (Wang, Hua, Candes & Pilanci 2022).

The recovery program of a planted linear neuron,

.. math::

    \min_{w_0, W}\; \|w_0\|_2 + \sum_j \|W_j\|_2
    \quad\text{s.t.}\quad \sum_j D_j X W_j + X w_0 = y,

over activation patterns :math:`D_j = \mathrm{diag}(\texttt{masks[:, j]})`: the
gated relaxation (no cone constraints, the paper's program) or, with
``cones=True``, the exact ReLU program with :math:`(2 D_j - I) X W_j \ge 0`
(then :math:`D_j X W_j = \mathrm{relu}(X W_j)`). On ``y = X w`` the planted
``w`` is *recovered* when the solution has ``w_0 = w`` and every ReLU group zero.

Recovery tests
--------------
strict
    ``np.allclose(w0, w, atol)`` and ``np.allclose(W, 0, atol)`` (the paper's test,
    default ``rtol``).
merged
    The same after adding the all-ones pattern's group into ``w0``. For
    :math:`D = I` the group enters the constraint as :math:`X W_1`, exactly like the
    skip neuron, so only :math:`w_0 + W_1` is determined by the constraint while
    :math:`\|w_0\| + \|W_1\| \ge \|w_0 + W_1\|` with equality whenever both are
    non-negative multiples of one direction: every split :math:`(t v, (1 - t) v)`,
    :math:`t \in [0, 1]`, of an optimal :math:`v` is optimal, the optimum is not
    unique, and an interior-point solver returns an interior split (often half
    each) that fails the strict test.

The all-ones pattern is attainable, :math:`1[X g \ge 0] = 1` for some
:math:`g \ne 0`, iff the cone :math:`\{g : X g \ge 0\}` has a non-zero point
(:func:`all_ones_attainable`, an exact linear program).

Algorithm plugin ``min_norm``: one step is one solve (then ``done``; the stopper
``solved`` ends the run). Patterns: ``n_patterns`` Gaussian gates (``None``:
``max(n, 50)``, the paper's) from the run's algorithm stream, plus the all-ones
pattern when attainable and not already drawn (``all_ones="auto"``, the paper's).
The planted vector is ``Problem.extras["w_star"]`` (data ``planted_linear``).
"""

import warnings

import numpy as np

from core.components import Algorithm, Indicator
from core.errors import ConfigError
from core.model import loss as model_loss
from core.params import Param

from ._patterns import sampled_patterns, unique_masks
from ._program import ConvexSolverError, group_norms, recover_network
from ._solver_cvxpy import STATUS_CODES, CvxpySolver

__all__ = [
    "MinNormSolution",
    "solve_min_norm",
    "all_ones_attainable",
    "all_ones_index",
    "recovery",
    "predict",
    "interpolation_error",
    "cone_violation",
    "min_norm_objective",
    "network_of",
    "MinNorm",
    "MinNormIndicator",
]

#: The per-run numbers of ``min_norm`` that its indicator puts in a sweep's summary.
RECOVERY_KEYS = (
    "recovered_strict",
    "recovered_merged",
    "w_error",
    "w_error_merged",
    "all_ones_attainable",
    "min_norm_objective",
    "interpolation_error",
    "cone_violation",
    "n_patterns",
    "status_code",
)

OWNER = "algorithm (min_norm)"


def all_ones_attainable(X, tol=1e-9):
    """Whether some ``g != 0`` has ``X g >= 0`` (the all-ones pattern is attainable).

    Exact: when ``X`` has a non-trivial null space (always when ``n < d``) a null
    vector gives ``X g = 0 >= 0``. Otherwise ``g -> X g`` is injective, so a non-zero
    ``g`` in the cone has ``X g >= 0``, ``X g != 0``, i.e. ``sum(X g) > 0``: the
    linear program ``max sum(X g)`` s.t. ``X g >= 0``, ``-1 <= g <= 1`` has a
    positive optimum iff the cone is non-trivial.

    Parameters
    ----------
    X : ndarray, shape (n, d)
    tol : float
        The optimum counts as positive above ``tol`` times ``max |X|``.

    Returns
    -------
    bool
    """
    from scipy.optimize import linprog

    X = np.asarray(X, dtype=float)
    if np.linalg.matrix_rank(X) < X.shape[1]:
        return True
    res = linprog(
        -X.sum(axis=0),
        A_ub=-X,
        b_ub=np.zeros(X.shape[0]),
        bounds=[(-1.0, 1.0)] * X.shape[1],
        method="highs",
    )
    if res.status != 0:
        raise RuntimeError(f"all_ones_attainable: linprog failed ({res.message})")
    return -res.fun > tol * max(float(np.abs(X).max(initial=0.0)), 1e-300)


def all_ones_index(masks):
    """Index of the all-ones column of ``masks`` (n, P), or None."""
    hits = np.flatnonzero(np.all(masks, axis=0))
    return int(hits[0]) if hits.size else None


class MinNormSolution(dict):
    """A solution: ``w0`` (d,), ``W`` (d, P), ``status``, ``solver``, ``tried``, ``iterations``."""


def solve_min_norm(X, y, masks, cones=False, solver=None):
    """Solve the min-norm skip-connection program (module docstring).

    Parameters
    ----------
    X : ndarray, shape (n, d)
    y : ndarray, shape (n,)
    masks : ndarray of bool, shape (n, P)
    cones : bool
        Add the cone constraints ``(2 D_j - I) X W_j >= 0`` (exact ReLU).
    solver : CvxpySolver, optional
        Its solver choice, fallback list and tolerances are used (default:
        ``CvxpySolver`` with its defaults).

    Returns
    -------
    MinNormSolution
        ``w0`` (d,), ``W`` (d, P), ``status`` (``optimal`` or ``optimal_inaccurate``),
        ``solver`` (the answering one), ``tried`` (list of str), ``iterations``.

    Raises
    ------
    ConvexSolverError
        No solver answered (each tried is named with its status).
    """
    import cvxpy as cp

    X, y = np.asarray(X, dtype=float), np.asarray(y, dtype=float)
    M = np.asarray(masks, dtype=float)
    if solver is None:
        solver = CvxpySolver(**{p.name: p.default for p in CvxpySolver.params})
    n, d = X.shape
    w0 = cp.Variable(d)
    W = cp.Variable((d, M.shape[1]))
    Z = X @ W
    constraints = [cp.sum(cp.multiply(M, Z), axis=1) + X @ w0 == y]
    if cones:
        constraints.append(cp.multiply(2 * M - 1, Z) >= 0)
    problem = cp.Problem(cp.Minimize(cp.norm(w0, 2) + cp.sum(cp.norm(W, 2, axis=0))), constraints)
    order, chosen = solver._solvers()
    tried = [f"{s} (not installed)" for s in order if s not in chosen]
    scale = max(float(np.abs(y).max(initial=0.0)), 1.0)
    for name in chosen:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                problem.solve(solver=name, verbose=solver.verbose, **solver._options(name))
        except cp.error.SolverError as exc:
            tried.append(f"{name} (error: {' '.join(str(exc).split())})")
            continue
        if problem.status not in STATUS_CODES or w0.value is None:
            tried.append(f"{name} (status {problem.status})")
            continue
        sol_w0, sol_W = np.asarray(w0.value), np.asarray(W.value)
        if problem.status == "optimal_inaccurate":
            bad = interpolation_error(X, y, masks, sol_w0, sol_W) / scale
            if cones:
                bad = max(bad, cone_violation(X, masks, sol_W) / scale)
            if not solver.accept_inaccurate or bad > solver.accept_tol:
                tried.append(f"{name} (status {problem.status}, residual {bad:.2e})")
                continue
        stats = problem.solver_stats
        iters = stats.num_iters if stats is not None and stats.num_iters is not None else 0
        return MinNormSolution(
            w0=sol_w0,
            W=sol_W,
            status=problem.status,
            solver=name,
            solver_code=order.index(name),
            tried=tried,
            iterations=int(iters),
        )
    raise ConvexSolverError("min-norm program: no solver answered: " + "; ".join(tried))


def predict(X, masks, w0, W):
    """``sum_j D_j X W_j + X w0``, shape (n,)."""
    return np.einsum("np,np->n", masks, X @ W) + X @ w0


def interpolation_error(X, y, masks, w0, W):
    """``|| sum_j D_j X W_j + X w0 - y ||_2``."""
    return float(np.linalg.norm(predict(X, masks, w0, W) - y))


def cone_violation(X, masks, W):
    """Largest violation of ``(2 D_j - I) X W_j >= 0`` (0.0 when feasible)."""
    S = np.where(masks, 1.0, -1.0)
    return max(0.0, -float(np.min(S * (X @ W), initial=0.0)))


def min_norm_objective(w0, W):
    """``||w0|| + sum_j ||W_j||``."""
    return float(np.linalg.norm(w0) + group_norms(W).sum())


def recovery(w0, W, masks, w, atol=1e-4):
    """Recovery tests of a solution against the planted ``w`` (module docstring).

    Parameters
    ----------
    w0 : ndarray, shape (d,)
    W : ndarray, shape (d, P)
    masks : ndarray of bool, shape (n, P)
    w : ndarray, shape (d,)
    atol : float

    Returns
    -------
    dict
        ``recovered_strict``, ``recovered_merged`` (bool), ``w_error``
        (``||w0 - w||``), ``w_error_merged`` (with the all-ones group added to ``w0``).
    """
    strict = bool(np.allclose(w0, w, atol=atol) and np.allclose(W, 0, atol=atol))
    k = all_ones_index(masks)
    merged_w0, rest = w0, W
    if k is not None:
        merged_w0 = w0 + W[:, k]
        rest = np.delete(W, k, axis=1)
    merged = bool(np.allclose(merged_w0, w, atol=atol) and np.allclose(rest, 0, atol=atol))
    return {
        "recovered_strict": strict,
        "recovered_merged": merged,
        "w_error": float(np.linalg.norm(w0 - w)),
        "w_error_merged": float(np.linalg.norm(merged_w0 - w)),
    }


def network_of(w0, W, tol=0.0):
    """A ReLU network ``(U (d, m), a (m,))`` of a solution.

    The skip neuron ``x . w0 = relu(x . w0) - relu(-x . w0)`` is two ReLU neurons
    (``+-w0 / sqrt||w0||``, ``a = +-sqrt||w0||``), first; then one neuron per group
    of norm above ``tol`` (:func:`plugins.convex._program.recover_network`). It
    reproduces the fit exactly when the groups meet their cones.
    """
    w0 = np.asarray(w0, dtype=float)[:, None]
    U, a = recover_network(W, np.zeros_like(W), tol)
    S, b = recover_network(np.hstack([w0, -w0]), np.zeros((w0.shape[0], 2)), tol)
    return np.hstack([S, U]), np.concatenate([b * np.array([1.0, -1.0])[: b.size], a])


class MinNorm(Algorithm):
    """Min-norm interpolation with a linear skip neuron over sampled patterns (Wang et al.)."""

    name = "min_norm"
    requires = ("cvxpy",)
    extra = "convex"
    params = (
        Param(
            "relaxation",
            str,
            "gated",
            "gated: no cone constraints (the paper's); none: exact ReLU with the cones",
            choices=("gated", "none"),
        ),
        Param(
            "n_patterns",
            int,
            None,
            "Gaussian gates drawn (None: max(n, 50), the paper's)",
            low=1,
            nullable=True,
        ),
        Param(
            "all_ones",
            str,
            "auto",
            "auto: append the all-ones pattern when attainable (exact LP); never",
            choices=("auto", "never"),
        ),
        Param("atol", float, 1e-4, "absolute tolerance of the recovery tests", low=0),
        Param(
            "solver_options",
            dict,
            {},
            "parameters of the cvxpy solver plugin (solver, fallback, eps, ...)",
        ),
    )

    def setup(self, problem):
        if problem.scaling != "standard":
            raise ConfigError(f"{OWNER} needs model.scaling='standard'; got {problem.scaling!r}")
        if problem.Y.ndim != 1:
            raise ConfigError(f"{OWNER} needs one output (Y of shape (n,)); got {problem.Y.shape}")
        self.problem = problem
        options = {p.name: p.default for p in CvxpySolver.params}
        unknown = set(self.solver_options) - set(options)
        if unknown:
            raise ConfigError(f"{OWNER}.solver_options: unknown {sorted(unknown)}")
        options.update(self.solver_options)
        self.solver_ = CvxpySolver(**options)
        X = problem.X
        count = self.n_patterns or max(problem.n, 50)
        masks = sampled_patterns(X, count, problem.rng)
        self.attainable = all_ones_attainable(X)
        if self.all_ones == "auto" and self.attainable and all_ones_index(masks) is None:
            masks = unique_masks(np.hstack([masks, np.ones((problem.n, 1), dtype=bool)]))
        self.masks = masks
        w = problem.extras.get("w_star")
        self.w_star = None if w is None else np.asarray(w, dtype=float)
        self.width = max(problem.m, masks.shape[1] + 2)
        self.w0, self.Wg = np.zeros(problem.d), np.zeros((problem.d, masks.shape[1]))
        self.info = {}
        self.converged = False

    @property
    def done(self):
        return self.converged

    def step(self):
        if self.converged:
            return
        p = self.problem
        sol = solve_min_norm(
            p.X, p.Y, self.masks, cones=self.relaxation == "none", solver=self.solver_
        )
        self.w0, self.Wg = sol.pop("w0"), sol.pop("W")
        self.info = dict(sol)
        self.converged = True

    def _network(self):
        return network_of(self.w0, self.Wg, 0.0)

    def loss(self):
        W, a = self._network()
        return model_loss(self.problem.X, self.problem.Y, W, a, "standard", self.problem.loss)

    def state(self):
        U, b = self._network()
        m = U.shape[1]
        W, a = np.zeros((self.problem.d, self.width)), np.zeros(self.width)
        W[:, :m], a[:m] = U, b
        return {"W": W, "a": a, "active": np.arange(self.width) < m}

    def scalars(self):
        p = self.problem
        out = {
            "min_norm_objective": min_norm_objective(self.w0, self.Wg),
            "interpolation_error": interpolation_error(p.X, p.Y, self.masks, self.w0, self.Wg),
            "cone_violation": cone_violation(p.X, self.masks, self.Wg),
            "all_ones_attainable": float(self.attainable),
            "n_patterns": float(self.masks.shape[1]),
            "converged": float(self.converged),
            "status_code": float(STATUS_CODES.get(self.info.get("status"), -1)),
            "solver_code": float(self.info.get("solver_code", -1)),
        }
        if self.w_star is not None:
            rec = recovery(self.w0, self.Wg, self.masks, self.w_star, self.atol)
            if not self.converged:  # nothing solved yet: no recovery claimed
                rec.update(recovered_strict=False, recovered_merged=False)
            out.update({k: float(v) for k, v in rec.items()})
            out["planted_norm"] = float(np.linalg.norm(self.w_star))
        return out

    def state_dict(self):
        return {
            "masks": self.masks.copy(),
            "w0": self.w0.copy(),
            "W": self.Wg.copy(),
            "converged": self.converged,
            "attainable": self.attainable,
            "info": {k: v for k, v in self.info.items() if k != "tried"},
            "tried": list(self.info.get("tried", [])),
        }

    def load_state_dict(self, state):
        self.masks = np.array(state["masks"], dtype=bool)
        self.w0 = np.array(state["w0"], dtype=float)
        self.Wg = np.array(state["W"], dtype=float)
        self.converged = bool(state["converged"])
        self.attainable = bool(state["attainable"])
        self.info = dict(state["info"])
        self.info["tried"] = list(state["tried"])


class MinNormIndicator(Indicator):
    """The last logged recovery numbers of a ``min_norm`` run (for sweep summaries).

    Summary keys (prefixed ``min_norm.`` by the indicator machinery): those of
    :data:`RECOVERY_KEYS` the run logged, at its last logged step, so a sweep's
    ``groups.csv`` has their mean per cell (``min_norm.recovered_strict_mean`` is the
    strict recovery probability) and ``sweep.success`` may name them.
    """

    name = "min_norm"

    def applies(self, run):
        return "recovered_strict" in run.scalars

    def summary(self, run):
        scalars = run.scalars
        out = {}
        for key in RECOVERY_KEYS:
            values = np.asarray(scalars.get(key, ()), dtype=float)
            if values.size:
                out[key] = float(values[-1])
        return out

    def per_snapshot(self, run, W, a):
        return {}
