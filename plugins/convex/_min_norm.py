r"""Minimum-norm interpolation by ReLU networks (Wang, Hua, Candes & Pilanci 2022).

The recovery program of a planted linear neuron (``network="skip"``),

.. math::

    \min_{w_0, W}\; \|w_0\|_2 + \sum_j \|W_j\|_2
    \quad\text{s.t.}\quad \sum_j D_j X W_j + X w_0 = y,

over activation patterns :math:`D_j = \mathrm{diag}(\texttt{masks[:, j]})`: the
gated relaxation (no cone constraints, the paper's program) or, with
``cones=True``, the exact ReLU program with :math:`(2 D_j - I) X W_j \ge 0`
(then :math:`D_j X W_j = \mathrm{relu}(X W_j)`; Wang et al.'s exact skip program:
positive ReLU neurons, the skip neuron carries the sign). On ``y = X w`` the
planted ``w`` is *recovered* when the solution has ``w_0 = w`` and every ReLU
group zero.

The other networks (``network``), each gated or exact:

``plain``
    No skip neuron: :math:`\min \sum_j \|v_j\| + \|w_j\|` s.t. :math:`\sum_j D_j X
    (v_j - w_j) = y`, exact with :math:`(2 D_j - I) X v_j \ge 0` and the same for
    :math:`w_j` (the beta -> 0 limit of :mod:`plugins.convex._program`); gated, only
    :math:`u_j = v_j - w_j` matters (one group per pattern).
``normalization``
    Normalisation layers: with thin SVDs :math:`D_j X = U_j S_j V_j^\top`
    (:func:`normalization_factors`), :math:`\min \sum_j \|a_j\| + \|b_j\|` s.t.
    :math:`\sum_j U_j (a_j - b_j) = y`; exact with :math:`(2 D_j - I) X V_j
    S_j^{-1} a_j \ge 0` (and for :math:`b_j`). The first-layer vectors are
    :math:`v_j = V_j S_j^{-1} a_j`, so :math:`\|a_j\| = \|D_j X v_j\|`, the norm of
    the neuron's activations over the data (what the normalisation layer divides
    by): the un-reduced form, equal in value (tested).

Every solution is returned in one layout (:class:`MinNormSolution`): ``w0`` and
the first-layer vectors ``V`` (positive groups) and ``Wn`` (negative groups) in
input space, the fit being :math:`X w_0 + \sum_j D_j X (V_j - Wn_j)`, so
:func:`predict`, :func:`interpolation_error`, :func:`cone_violation`,
:func:`network_of` and :func:`recovery` serve every network; the objective in the
network's own norm is :func:`network_objective`. A gated group goes to ``V`` or to
``Wn`` (negated), whichever breaks its cone constraint less.

Solvers
-------
``interior_point`` (:func:`solve_min_norm_ipm`, gated programs): every gated
program is a group basis pursuit, solved by the certified interior point of
:mod:`plugins.convex._basis_pursuit` (Schur complement of ``2 n^2 G`` flops per
iteration; 8-17 iterations to a relative duality gap of 1e-8 over the paper's
grid). ``cvxpy`` (:func:`solve_min_norm`, every program): Clarabel first, then
the fallbacks of :class:`plugins.convex._solver_cvxpy.CvxpySolver`; for the gated
programs its equality multiplier gives a dual bound too (:func:`dual_bound`).

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
certificate
    The planted point (``w0 = w``, no group) is feasible with value ``||w||``. With
    a certified solve (value ``P``, dual bound ``D``), ``planted_excess_min = ||w||
    - P > 0`` proves ``w`` is not the optimum, and ``planted_excess_max = ||w|| -
    D`` bounds how far from optimal it is: near the boundary, where some failures
    have an optimal value within 1e-4 of ``||w||``, the decision rests on a gap of
    1e-8, not on a solver's default accuracy.

The all-ones pattern is attainable, :math:`1[X g \ge 0] = 1` for some
:math:`g \ne 0`, iff the cone :math:`\{g : X g \ge 0\}` has a non-zero point
(:func:`all_ones_attainable`, an exact linear program).

Algorithm plugin ``min_norm``: one step is one solve (then ``done``; the stopper
``solved`` ends the run). Patterns: ``n_patterns`` Gaussian gates (``None``:
``max(n, 50)``, the paper's) from the run's algorithm stream, plus the all-ones
pattern when attainable and not already drawn (``all_ones="auto"``, the paper's).
``solver="auto"`` (default): the interior point for the gated programs, falling
back to cvxpy when a solve is not certified (the reason is the first entry of
``tried`` in the checkpoint), cvxpy for the exact ones. Recorded per run:
``solver_code`` (0 interior point, ``1 + i`` cvxpy's ``i``-th solver of ``[solver] +
fallback``), ``relative_gap`` (-1 when the answer has no dual bound: exact
programs), the recovery numbers, the planted certificate, and ``test_distance``
(RMS distance between the recovered ReLU network and ``x . w`` on the data's
fresh points ``X_test``, data option ``n_test``; :func:`fresh_distance`). The
planted vector is ``Problem.extras["w_star"]`` (data ``planted_linear``).
"""

import math
import warnings

import numpy as np

from core.components import Algorithm, Indicator
from core.errors import ConfigError
from core.model import loss as model_loss
from core.params import Param

from ._basis_pursuit import DenseGroups, MaskedGroups, solve_group_bp
from ._first_order import split_groups
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
    "network_objective",
    "network_of",
    "normalization_factors",
    "solve_min_norm_ipm",
    "dual_bound",
    "fresh_distance",
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
    "solver_code",
    "relative_gap",
    "planted_excess_max",
    "planted_excess_min",
    "test_distance",
)

OWNER = "algorithm (min_norm)"

#: The networks of the min-norm programs (module docstring).
NETWORKS = ("skip", "plain", "normalization")

_TINY = np.finfo(float).tiny


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
    """A solution of one of the min-norm programs (:func:`solve_min_norm`).

    Keys: ``w0`` (d,) the skip neuron (zero without a skip), ``V`` and ``Wn`` (d, P)
    the first-layer vectors of the positive and negative ReLU groups (the fit is
    ``X w0 + sum_j D_j X (V_j - Wn_j)``), ``W = V - Wn``, ``status``, ``solver``
    (the answering one), ``solver_code``, ``tried``, ``iterations``, and the
    certificate ``objective``, ``dual``, ``gap`` (``dual`` and ``gap`` are NaN when
    the answering solver gives no dual bound: the exact programs through cvxpy).
    """


def normalization_factors(X, masks, rtol=1e-10):
    r"""Thin SVDs :math:`D_i X = U_i S_i V_i^\top` of every pattern, padded to width ``d``.

    Parameters
    ----------
    X : ndarray, shape (n, d)
    masks : ndarray of bool, shape (n, P)
    rtol : float
        Singular values at most ``rtol`` times the largest of ``D_i X`` are dropped
        (rank ``r_i``).

    Returns
    -------
    U : ndarray, shape (P, n, d)
        ``U_i`` in the first ``r_i`` columns, zero after.
    T : ndarray, shape (P, d, d)
        ``V_i S_i^{-1}`` in the first ``r_i`` columns, zero after: the first-layer
        vector of a group ``a_i`` is ``T_i a_i`` (``D_i X T_i a_i = U_i a_i``).
    """
    X = np.asarray(X, dtype=float)
    n, d = X.shape
    M = np.asarray(masks, dtype=float)
    P = M.shape[1]
    U, T = np.zeros((P, n, d)), np.zeros((P, d, d))
    for i in range(P):
        u, s, vt = np.linalg.svd(M[:, i, None] * X, full_matrices=False)
        r = int(np.sum(s > rtol * max(float(s[0]) if s.size else 0.0, _TINY)))
        U[i, :, :r] = u[:, :r]
        T[i, :, :r] = vt[:r].T / s[:r]
    return U, T


def _groups(X, masks, network):
    """The gated program's groups (one per pattern, the skip first) and their map to ``u``.

    Returns ``(groups, to_u)``: ``groups`` a :class:`MaskedGroups` or
    :class:`DenseGroups`, ``to_u(Z)`` the first-layer vectors ``(w0 (d,), U (d, P))``
    of a solution ``Z`` of the group basis pursuit.
    """
    X = np.asarray(X, dtype=float)
    n, d = X.shape
    if network == "normalization":
        U, T = normalization_factors(X, masks)
        return DenseGroups(U), lambda Z: (np.zeros(d), np.einsum("pdk,kp->dp", T, Z))
    M = np.asarray(masks, dtype=float)
    if network == "skip":
        return MaskedGroups(X, np.hstack([np.ones((n, 1)), M])), lambda Z: (Z[:, 0], Z[:, 1:])
    return MaskedGroups(X, M), lambda Z: (np.zeros(d), Z)


def _split(X, masks, U):
    """``(V, Wn)``: each gated ``u_j`` to ``V`` or ``-Wn``, whichever breaks its cone less."""
    return split_groups(np.asarray(masks, dtype=bool), U, X @ U, "gated")


def _check_network(network):
    if network not in NETWORKS:
        raise ValueError(f"network must be one of {NETWORKS}; got {network!r}")


def dual_bound(X, y, masks, theta, network="skip"):
    r"""A lower bound on the gated program's optimum from any ``theta`` (n,).

    :math:`\max_{s = \pm 1} s\, y^\top\theta / \max(1, \max_j \|A_j^\top \theta\|)`:
    the scaled ``theta`` is feasible for the dual of the group basis pursuit
    (:mod:`plugins.convex._basis_pursuit`), whichever sign convention produced it.
    """
    groups, _ = _groups(X, masks, network)
    worst = float(np.max(group_norms(groups.adjoint(np.asarray(theta, float))), initial=0.0))
    return abs(float(np.asarray(y, float) @ theta)) / max(1.0, worst)


def solve_min_norm_ipm(X, y, masks, network="skip", tol=1e-8, feas_tol=1e-10, max_iter=100):
    """The gated min-norm program by the certified interior point (group basis pursuit).

    Parameters
    ----------
    X : ndarray, shape (n, d)
    y : ndarray, shape (n,)
    masks : ndarray of bool, shape (n, P)
    network : {"skip", "plain", "normalization"}
    tol, feas_tol, max_iter
        :func:`plugins.convex._basis_pursuit.solve_group_bp`.

    Returns
    -------
    MinNormSolution
        With ``certified`` (bool) and ``error`` (None, or why the iteration
        stopped); ``status`` is ``optimal`` when certified, else ``uncertified``.
    """
    _check_network(network)
    groups, to_u = _groups(X, masks, network)
    res = solve_group_bp(groups, y, tol=tol, feas_tol=feas_tol, max_iter=max_iter)
    w0, U = to_u(res["Z"])
    V, Wn = _split(np.asarray(X, float), masks, U)
    return MinNormSolution(
        w0=w0,
        V=V,
        Wn=Wn,
        W=V - Wn,
        status="optimal" if res["certified"] else "uncertified",
        solver="interior_point",
        solver_code=0,
        tried=[],
        iterations=int(res["iterations"]),
        objective=res["objective"],
        dual=res["dual"],
        gap=res["gap"],
        residual=res["residual"],
        certified=bool(res["certified"]),
        error=res["error"],
    )


def _cvxpy_program(X, y, masks, cones, network):
    """The program in cvxpy: ``(problem, unpack, equality)``; ``unpack()`` -> (w0, V, Wn)."""
    import cvxpy as cp

    n, d = X.shape
    M = np.asarray(masks, dtype=float)
    P = M.shape[1]
    S = 2 * M - 1
    constraints, norms = [], []
    if network == "normalization":
        U, T = normalization_factors(X, masks)
        a = cp.Variable((d, P))
        parts = [a]
        if cones:
            b = cp.Variable((d, P))
            parts.append(b)
            C = np.einsum("np,nd,pdk->pnk", S, X, T)  # (2 D_i - I) X V_i S_i^-1
            for i in range(P):
                constraints += [C[i] @ a[:, i] >= 0, C[i] @ b[:, i] >= 0]
        # sum_i U_i z_i, one product per pattern (no cp.vec: its default order changed)
        fit = sum(sign * sum(U[i] @ z[:, i] for i in range(P)) for z, sign in zip(parts, (1, -1)))
        norms = [cp.sum(cp.norm(z, 2, axis=0)) for z in parts]

        def unpack():
            vals = [np.einsum("pdk,kp->dp", T, np.asarray(z.value)) for z in parts]
            if len(vals) == 1:
                return (np.zeros(d), *_split(X, masks, vals[0]))
            return np.zeros(d), vals[0], vals[1]

    else:
        w0 = cp.Variable(d) if network == "skip" else None
        V = cp.Variable((d, P))
        # skip, exact: the groups of Wang et al.'s program (positive ReLU neurons only,
        # the skip neuron carries the sign); plain, exact: v_i and w_i per pattern
        Wn = cp.Variable((d, P)) if cones and network == "plain" else None
        fit = cp.sum(cp.multiply(M, X @ V), axis=1)
        norms = [cp.sum(cp.norm(V, 2, axis=0))]
        if cones:
            constraints.append(cp.multiply(S, X @ V) >= 0)
        if Wn is not None:
            fit = fit - cp.sum(cp.multiply(M, X @ Wn), axis=1)
            norms.append(cp.sum(cp.norm(Wn, 2, axis=0)))
            constraints.append(cp.multiply(S, X @ Wn) >= 0)
        if w0 is not None:
            fit = fit + X @ w0
            norms.append(cp.norm(w0, 2))

        def unpack():
            zero = np.zeros(d)
            skip = zero if w0 is None else np.asarray(w0.value)
            Vv = np.asarray(V.value)
            if Wn is not None:
                return skip, Vv, np.asarray(Wn.value)
            if cones:
                return skip, Vv, np.zeros_like(Vv)
            return (skip, *_split(X, masks, Vv))

    equality = fit == y
    problem = cp.Problem(cp.Minimize(sum(norms)), [equality, *constraints])
    return problem, unpack, equality


def solve_min_norm(X, y, masks, cones=False, solver=None, network="skip"):
    """Solve a min-norm program with cvxpy (module docstring).

    Parameters
    ----------
    X : ndarray, shape (n, d)
    y : ndarray, shape (n,)
    masks : ndarray of bool, shape (n, P)
    cones : bool
        Add the cone constraints (the exact ReLU programs).
    solver : CvxpySolver, optional
        Its solver choice, fallback list and tolerances are used (default:
        ``CvxpySolver`` with its defaults).
    network : {"skip", "plain", "normalization"}

    Returns
    -------
    MinNormSolution
        ``status`` ``optimal`` or ``optimal_inaccurate``; for the gated programs
        ``dual`` and ``gap`` from the equality constraint's multiplier
        (:func:`dual_bound`).

    Raises
    ------
    ConvexSolverError
        No solver answered (each tried is named with its status).
    """
    import cvxpy as cp

    _check_network(network)
    X, y = np.asarray(X, dtype=float), np.asarray(y, dtype=float)
    if solver is None:
        solver = CvxpySolver(**{p.name: p.default for p in CvxpySolver.params})
    problem, unpack, equality = _cvxpy_program(X, y, masks, cones, network)
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
        if problem.status not in STATUS_CODES or problem.value is None:
            tried.append(f"{name} (status {problem.status})")
            continue
        w0, V, Wn = unpack()
        if problem.status == "optimal_inaccurate":
            bad = interpolation_error(X, y, masks, w0, V - Wn) / scale
            if cones:
                bad = max(bad, cone_violation(X, masks, V) / scale)
                bad = max(bad, cone_violation(X, masks, Wn) / scale)
            if not solver.accept_inaccurate or bad > solver.accept_tol:
                tried.append(f"{name} (status {problem.status}, residual {bad:.2e})")
                continue
        value = network_objective(X, masks, w0, V, Wn, network)
        dual = math.nan
        if not cones and equality.dual_value is not None:
            dual = dual_bound(X, y, masks, np.asarray(equality.dual_value, float), network)
        stats = problem.solver_stats
        iters = stats.num_iters if stats is not None and stats.num_iters is not None else 0
        return MinNormSolution(
            w0=w0,
            V=V,
            Wn=Wn,
            W=V - Wn,
            status=problem.status,
            solver=name,
            solver_code=1 + order.index(name),
            tried=tried,
            iterations=int(iters),
            objective=value,
            dual=dual,
            gap=value - dual,
        )
    raise ConvexSolverError("min-norm program: no solver answered: " + "; ".join(tried))


def network_objective(X, masks, w0, V, Wn, network="skip"):
    """The objective of a solution in its network's norm (module docstring).

    ``skip``: ``||w0|| + sum_j ||V_j|| + ||Wn_j||``; ``plain``: the same without
    ``w0``; ``normalization``: ``sum_j ||D_j X V_j|| + ||D_j X Wn_j||`` (the norms of
    the ``a_i``, ``b_i``: ``||U_i a_i|| = ||a_i||``).
    """
    _check_network(network)
    if network == "normalization":
        M = np.asarray(masks, dtype=float)
        return float(
            np.sqrt(((M * (X @ V)) ** 2).sum(axis=0)).sum()
            + np.sqrt(((M * (X @ Wn)) ** 2).sum(axis=0)).sum()
        )
    return float(np.linalg.norm(w0) + group_norms(V).sum() + group_norms(Wn).sum())


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


def network_of(w0, V, Wn=None, tol=0.0):
    """A ReLU network ``(U (d, m), a (m,))`` of a solution.

    The skip neuron ``x . w0 = relu(x . w0) - relu(-x . w0)`` is two ReLU neurons
    (``+-w0 / sqrt||w0||``, ``a = +-sqrt||w0||``), first; then one neuron per group
    of ``V`` (positive) and of ``Wn`` (negative); only vectors of norm above ``tol``
    become neurons (no skip pair when ``w0 = 0``)
    (:func:`plugins.convex._program.recover_network`). It reproduces the fit exactly
    when the groups meet their cones.

    Parameters
    ----------
    w0 : ndarray, shape (d,)
    V : ndarray, shape (d, P)
    Wn : ndarray, shape (d, P), optional
        Zero when omitted.
    tol : float
    """
    w0 = np.asarray(w0, dtype=float)[:, None]
    V = np.asarray(V, dtype=float)
    U, a = recover_network(V, np.zeros_like(V) if Wn is None else np.asarray(Wn, float), tol)
    S, b = recover_network(np.hstack([w0, -w0]), np.zeros((w0.shape[0], 2)), tol)
    return np.hstack([S, U]), np.concatenate([b * np.array([1.0, -1.0])[: b.size], a])


def fresh_distance(X_test, w, w0, V, Wn=None):
    r"""RMS distance between the recovered ReLU network and the planted ``x . w`` on fresh points.

    :math:`\big(\frac1{n_t}\sum_i (f(x_i) - x_i^\top w)^2\big)^{1/2}` with ``f`` the
    network of :func:`network_of` (the ReLU network of the solution, evaluated on
    points whose patterns the program never saw).

    Parameters
    ----------
    X_test : ndarray, shape (n_test, d)
    w : ndarray, shape (d,)
    w0 : ndarray, shape (d,)
    V, Wn : ndarray, shape (d, P)

    Returns
    -------
    float
        In the units of the labels.
    """
    U, a = network_of(w0, V, Wn)
    f = np.maximum(X_test @ U, 0.0) @ a
    return float(np.sqrt(np.mean((f - X_test @ w) ** 2)))


class MinNorm(Algorithm):
    """Min-norm interpolation over sampled patterns, skip / plain / normalised (Wang et al.)."""

    name = "min_norm"
    requires = ("cvxpy",)
    extra = "convex"
    params = (
        Param(
            "network",
            str,
            "skip",
            "skip: a linear skip neuron plus ReLU groups (the paper's recovery program); "
            "plain: ReLU groups only; normalization: normalisation layers (groups U_i)",
            choices=NETWORKS,
        ),
        Param(
            "relaxation",
            str,
            "gated",
            "gated: no cone constraints (the paper's); none: exact ReLU with the cones",
            choices=("gated", "none"),
        ),
        Param(
            "solver",
            str,
            "auto",
            "auto: interior_point for gated programs, cvxpy with the cones; interior_point "
            "(gated only; falls back to cvxpy when not certified); cvxpy",
            choices=("auto", "interior_point", "cvxpy"),
        ),
        Param(
            "tol",
            float,
            1e-8,
            "relative duality gap that certifies an interior_point solve",
            low=0,
            low_open=True,
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
        cones = self.relaxation == "none"
        if self.solver == "interior_point" and cones:
            raise ConfigError(
                f"{OWNER}.solver='interior_point' solves the gated programs only; "
                "relaxation='none' needs solver 'auto' or 'cvxpy'"
            )
        self.use_ipm = self.solver == "interior_point" or (self.solver == "auto" and not cones)
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
        d, P = problem.d, masks.shape[1]
        # neurons: the skip pair, then one per group (v_i and w_i both: plain / normalised
        # exact programs; one of them per pattern otherwise)
        self.width = max(problem.m, (2 * P if cones and self.network != "skip" else P) + 2)
        self.w0, self.V, self.Wn = np.zeros(d), np.zeros((d, P)), np.zeros((d, P))
        self.info = {}
        self.converged = False

    @property
    def done(self):
        return self.converged

    def step(self):
        if self.converged:
            return
        p = self.problem
        cones = self.relaxation == "none"
        sol, tried = None, []
        if self.use_ipm:
            sol = solve_min_norm_ipm(p.X, p.Y, self.masks, self.network, tol=self.tol)
            if not sol["certified"]:
                rel = sol["gap"] / max(sol["objective"], _TINY)
                why = sol["error"] or f"relative gap {rel:.1e}"
                tried = [f"interior_point (not certified: {why})"]
                sol = None
        if sol is None:
            sol = solve_min_norm(p.X, p.Y, self.masks, cones, self.solver_, self.network)
            sol["tried"] = tried + sol["tried"]
        self.w0, self.V, self.Wn = sol.pop("w0"), sol.pop("V"), sol.pop("Wn")
        sol.pop("W")
        self.info = {k: v for k, v in sol.items() if k != "error"}
        self.converged = True

    def _network(self):
        return network_of(self.w0, self.V, self.Wn, 0.0)

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
        W = self.V - self.Wn
        value = network_objective(p.X, self.masks, self.w0, self.V, self.Wn, self.network)
        gap = float(self.info.get("gap", math.nan))
        out = {
            "min_norm_objective": value,
            "interpolation_error": interpolation_error(p.X, p.Y, self.masks, self.w0, W),
            "cone_violation": max(
                cone_violation(p.X, self.masks, self.V), cone_violation(p.X, self.masks, self.Wn)
            ),
            "all_ones_attainable": float(self.attainable),
            "n_patterns": float(self.masks.shape[1]),
            "converged": float(self.converged),
            "status_code": float(STATUS_CODES.get(self.info.get("status"), -1)),
            "solver_code": float(self.info.get("solver_code", -1)),
            "relative_gap": gap / max(value, _TINY) if math.isfinite(gap) else -1.0,
        }
        if self.w_star is not None:
            rec = recovery(self.w0, W, self.masks, self.w_star, self.atol)
            if not self.converged:  # nothing solved yet: no recovery claimed
                rec.update(recovered_strict=False, recovered_merged=False)
            out.update({k: float(v) for k, v in rec.items()})
            out["planted_norm"] = float(np.linalg.norm(self.w_star))
            if self.converged and self.network == "skip" and math.isfinite(gap):
                # the planted point (w0 = w, no group) against the certified bounds
                dual = float(self.info["dual"])
                out["planted_excess_max"] = out["planted_norm"] - dual
                out["planted_excess_min"] = out["planted_norm"] - value
            if p.X_test is not None:
                out["test_distance"] = fresh_distance(
                    p.X_test, self.w_star, self.w0, self.V, self.Wn
                )
        return out

    def state_dict(self):
        return {
            "masks": self.masks.copy(),
            "w0": self.w0.copy(),
            "V": self.V.copy(),
            "Wn": self.Wn.copy(),
            "converged": self.converged,
            "attainable": self.attainable,
            "info": {k: v for k, v in self.info.items() if k != "tried"},
            "tried": list(self.info.get("tried", [])),
        }

    def load_state_dict(self, state):
        self.masks = np.array(state["masks"], dtype=bool)
        self.w0 = np.array(state["w0"], dtype=float)
        if "V" in state:
            self.V = np.array(state["V"], dtype=float)
            self.Wn = np.array(state["Wn"], dtype=float)
        else:  # a checkpoint of the skip program written before V / Wn
            self.V = np.array(state["W"], dtype=float)
            self.Wn = np.zeros_like(self.V)
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
