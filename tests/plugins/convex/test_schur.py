"""Matrix-free Schur solves of the interior point (``plugins/convex/_schur.py``).

Checked against mathematics: the matrix-free product equals the explicit sum
``I + sum_p D_p X C_p X^T D_p``; the pivoted Cholesky factors leave a positive
semi-definite remainder whose diagonal is the one returned (and nothing at
``tol = 0``); PCG solves to its residual bound and in one iteration with the exact
preconditioner; an interior-point step whose Newton systems are solved by PCG equals
the step by the Cholesky factor of the formed matrix; solves with ``schur="pcg"``
reach the certified optimum of the direct path and of Clarabel; resumption is bit
for bit.
"""

import functools

import numpy as np
import pytest
from convex_cases import planted_problem, through_checkpoint

from core.params import validate_params
from plugins.convex import _schur
from plugins.convex._first_order import ConicInteriorPoint, InteriorPoint, signed_masks
from plugins.convex._program import ConvexProgram, ConvexSolverError


def _blocks(rng, P, d, spread=6.0):
    """PSD blocks with eigenvalues over ``spread`` decades (as near the optimum)."""
    Q = np.linalg.qr(rng.standard_normal((P, d, d)))[0]
    lam = 10.0 ** rng.uniform(-spread / 2, spread / 2, size=(P, d))
    return np.einsum("pij,pj,pkj->pik", Q, lam, Q)


def _dense_schur(X, pats, C):
    N = np.eye(X.shape[0])
    for p in range(C.shape[0]):
        A = pats[:, p, None] * X
        N += A @ C[p] @ A.T
    return N


_data = functools.partial(planted_problem, n=40, d=4, P=12)


def _engine(schur, data=None, **options):
    X, y, masks, beta = data or _data()
    M, _ = signed_masks(masks, True)
    engine = ConicInteriorPoint(X, y, M, beta, True, tol=1e-7, schur=schur, **options)
    if engine._pcg is not None:
        engine._pcg.max_rank_fraction = 1.0  # PCG at every iteration, however early
    return engine


def test_matvec_equals_the_explicit_schur_complement():
    rng = np.random.default_rng(0)
    n, d, P = 30, 4, 7
    X = rng.standard_normal((n, d))
    pats = (rng.random((n, P)) < 0.5).astype(float)
    C = _blocks(rng, P, d)
    N = _dense_schur(X, pats, C)
    V = rng.standard_normal((n, 3))
    for v in V.T:
        np.testing.assert_allclose(_schur.schur_matvec(X, pats, C, v), N @ v, rtol=1e-12, atol=0)


def test_pattern_blocks_sum_the_groups_gram_matrices():
    rng = np.random.default_rng(1)
    K = rng.standard_normal((5, 2, 4, 3))
    C = _schur.pattern_blocks(K, 5)
    for p in range(5):
        np.testing.assert_allclose(C[p], K[p, 0].T @ K[p, 0] + K[p, 1].T @ K[p, 1], rtol=1e-12)


@pytest.mark.parametrize("tol", [0.0, 1e-2, 1.0, 1e2])
def test_pivoted_cholesky_leaves_a_psd_remainder_with_the_returned_diagonal(tol):
    rng = np.random.default_rng(2)
    P, d = 6, 8
    C = _blocks(rng, P, d)
    L, ranks, rest = _schur.pivoted_cholesky(C, tol)
    for p in range(P):
        Lp = L[p][:, : ranks[p]]
        assert np.all(L[p][:, ranks[p] :] == 0)
        E = C[p] - Lp @ Lp.T
        scale = np.abs(C[p]).max()
        np.testing.assert_allclose(np.diag(E), rest[p], atol=1e-9 * scale)
        assert np.linalg.eigvalsh(E).min() >= -1e-9 * scale
        assert rest[p].max() <= max(tol, 1e-9 * scale)  # stopped below tol
    if tol == 0.0:
        assert np.all(ranks == d)  # positive definite: the full factorisation
    # with ``flat``, a block also stops once its remaining diagonal is nearly flat
    L, ranks, rest = _schur.pivoted_cholesky(C, tol, flat=3.0)
    for p in range(P):
        Lp = L[p][:, : ranks[p]]
        E = C[p] - Lp @ Lp.T
        scale = np.abs(C[p]).max()
        np.testing.assert_allclose(np.diag(E), rest[p], atol=1e-9 * scale)
        assert np.linalg.eigvalsh(E).min() >= -1e-9 * scale
        assert rest[p].max() <= max(tol, 3.0 * rest[p].mean(), 1e-9 * scale)


def test_pcg_meets_its_residual_bound_and_is_exact_with_the_exact_preconditioner():
    rng = np.random.default_rng(3)
    n, d, P = 40, 5, 9
    X = rng.standard_normal((n, d)) / np.sqrt(n)
    pats = (rng.random((n, P)) < 0.5).astype(float)
    C = _blocks(rng, P, d)
    N = _dense_schur(X, pats, C)
    b = rng.standard_normal(n)
    w_exact = np.linalg.solve(N, b)

    def matvec(v):
        return _schur.schur_matvec(X, pats, C, v)

    w, its, ok = _schur.pcg(matvec, lambda r: r, b, 1e-10, 500)
    assert ok and np.linalg.norm(b - N @ w) <= 1e-9 * np.linalg.norm(b)
    np.testing.assert_allclose(w, w_exact, rtol=1e-6 * np.linalg.cond(N))
    w1, its1, ok1 = _schur.pcg(matvec, lambda r: np.linalg.solve(N, r), b, 1e-10, 5)
    assert ok1 and its1 == 1
    # the split preconditioner keeping every direction (tau = 0) is N itself
    pre = _schur.SplitPreconditioner(X, pats, tau=0.0, max_rank_fraction=1.0).build(C)
    assert pre.rank == P * d
    np.testing.assert_allclose(pre(b), w_exact, rtol=1e-8)
    # over the rank budget, the factors stop where the remainder is flat, and PCG
    # still meets its bound; a budget the flat factors exceed too builds nothing
    flat = _schur.SplitPreconditioner(X, pats, tau=0.0, max_rank_fraction=0.5).build(C)
    assert flat.kind == "flat" and 0 < flat.rank <= 0.5 * P * d
    w2, its2, ok2 = _schur.pcg(matvec, flat, b, 1e-10, 500)
    assert ok2 and np.linalg.norm(b - N @ w2) <= 1e-9 * np.linalg.norm(b)
    assert _schur.SplitPreconditioner(X, pats, tau=0.0, max_rank_fraction=0.0).build(C) is None


@pytest.mark.parametrize("tau", [1e-2, 1.0, 10.0, 1e3])
def test_the_split_preconditioner_solves_with_its_documented_matrix(tau):
    # N_hat = I + F_R F_R^T + (X X^T) o (|M| diag(c) |M|^T), written out densely here;
    # the build forms one triangle by symmetric rank-k updates and factors it in place
    rng = np.random.default_rng(5)
    n, d, P = 35, 5, 8
    X = rng.standard_normal((n, d))
    pats = (rng.random((n, P)) < 0.5).astype(float)
    C = _blocks(rng, P, d)
    pre = _schur.SplitPreconditioner(X, pats, tau=tau, max_rank_fraction=1.0).build(C)
    L, ranks, rest = _schur.pivoted_cholesky(C, tau / pre.scale)
    assert 0 < pre.rank == ranks.sum() <= P * d  # all of them at tau = 1e-2
    N_hat = np.eye(n) + (X @ X.T) * ((pats * (rest.sum(axis=1) / d)) @ pats.T)
    for p in range(P):
        F = pats[:, p, None] * (X @ L[p][:, : ranks[p]])
        N_hat += F @ F.T
    for b in rng.standard_normal((3, n)):
        np.testing.assert_allclose(pre(b), np.linalg.solve(N_hat, b), rtol=1e-10, atol=0)


@pytest.mark.parametrize("k", [1, 4, 9])
def test_a_pcg_step_equals_the_direct_step(k):
    direct, pcg = _engine("direct"), _engine("pcg")
    for _ in range(k):
        direct.step()
    pcg.load_state_dict(direct.state_dict())
    direct.step()
    pcg.step()
    assert pcg.schur_last == "pcg" and pcg.pcg_iterations > 0
    for key in ("Z", "t", "XZ", "so", "lo", "lq"):
        a, b = getattr(direct, key), getattr(pcg, key)
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-7 * max(np.abs(a).max(), 1e-300))


def test_pcg_solves_reach_the_direct_and_clarabel_optimum():
    cp = pytest.importorskip("cvxpy")
    X, y, masks, beta = data = _data()
    results = {}
    for schur in ("direct", "pcg"):
        engine = _engine(schur, data)
        while not engine.done and engine.iteration < 100:
            engine.step()
        assert engine.done and engine.violation <= 1e-6 * engine.scale_y
        results[schur] = engine.objective
    # the program written directly in cvxpy, by Clarabel
    n, d = X.shape
    M = masks.astype(float)
    V, W = cp.Variable((d, M.shape[1])), cp.Variable((d, M.shape[1]))
    pred = cp.sum(cp.multiply(M, X @ V) - cp.multiply(M, X @ W), axis=1)
    cost = 0.5 * cp.sum_squares(pred - y) + beta * (
        cp.sum(cp.norm(V, 2, axis=0)) + cp.sum(cp.norm(W, 2, axis=0))
    )
    S = 2 * M - 1
    problem = cp.Problem(
        cp.Minimize(cost), [cp.multiply(S, X @ V) >= 0, cp.multiply(S, X @ W) >= 0]
    )
    problem.solve(solver="CLARABEL", tol_gap_abs=1e-10, tol_gap_rel=1e-10, tol_feas=1e-10)
    assert results["pcg"] == pytest.approx(results["direct"], rel=1e-7)
    assert results["pcg"] == pytest.approx(problem.value, rel=1e-6)


def test_resume_with_pcg_is_bitwise_exact():
    X, y, masks, beta = _data()
    program = ConvexProgram(X, y, masks, beta, cones=True)

    def solver():
        s = InteriorPoint(**validate_params("solver", {"schur": "pcg"}, InteriorPoint.params))
        s.start(program)
        if s.engine._pcg is not None:
            s.engine._pcg.max_rank_fraction = 1.0
        return s

    whole, first = solver(), solver()
    for _ in range(7):
        whole.step()
        first.step()
    assert whole.engine.schur_last == "pcg"
    second = solver()
    second.load_state_dict(through_checkpoint(first.state_dict()))
    for _ in range(5):
        assert whole.step() == second.step()
    for key in ("V", "Wn"):
        assert np.array_equal(whole.solution()[key], second.solution()[key])


def test_auto_picks_pcg_only_for_large_programs_and_bad_values_are_refused():
    assert _engine("auto")._pcg is None  # n^2 P d far below AUTO_PCG_WORK
    assert _engine("pcg")._pcg is not None
    assert _engine("direct")._pcg is None
    with pytest.raises(ConvexSolverError, match="schur"):
        _engine("cholesky")
