"""The iterative solvers ``first_order`` (FISTA / augmented Lagrangian) and ``interior_point``.

Numbers checked come from the mathematics: the optimum of an independent cvxpy
formulation solved by Clarabel; the duality-gap certificate bounds the distance to
it from above at every step and the dual bound stays below it; the group-lasso KKT
conditions (with the cone multipliers for the exact form); the cone constraints;
the masked products against explicit ``D_i X`` sums; bit-for-bit resumption.
"""

import functools

import numpy as np
import pytest
from convex_cases import planted_problem, through_checkpoint

from core.params import validate_params
from plugins.convex._first_order import (
    ConicInteriorPoint,
    FirstOrder,
    GroupLassoAPG,
    InteriorPoint,
    block_soft_threshold,
    masked_adjoint,
    masked_forward,
    operator_norm_squared,
    signed_masks,
    solve,
)
from plugins.convex._program import (
    ConvexProgram,
    ConvexSolverError,
    cone_violation,
    duality_gap,
    group_norms,
    objective,
)

cp = pytest.importorskip("cvxpy")

SOLVERS = {"first_order": FirstOrder, "interior_point": InteriorPoint}


_data = functools.partial(planted_problem, n=30, d=3, P=10)


def _cvxpy_optimum(X, y, masks, beta, cones, signs=None):
    """The program written directly in cvxpy (an independent formulation), by Clarabel."""
    n, d = X.shape
    P = masks.shape[1]
    M = masks.astype(float)
    S = 2 * M - 1
    sv = np.ones(P) if signs is None else (np.asarray(signs) > 0).astype(float)
    sw = np.ones(P) if signs is None else (np.asarray(signs) < 0).astype(float)
    V, W = cp.Variable((d, P)), cp.Variable((d, P))
    pred = cp.sum(cp.multiply(M * sv, X @ V) - cp.multiply(M * sw, X @ W), axis=1)
    cost = 0.5 * cp.sum_squares(pred - y) + beta * (
        cp.sum(cp.multiply(sv, cp.norm(V, 2, axis=0)))
        + cp.sum(cp.multiply(sw, cp.norm(W, 2, axis=0)))
    )
    constraints = [cp.multiply(S, X @ V) >= 0, cp.multiply(S, X @ W) >= 0] if cones else []
    problem = cp.Problem(cp.Minimize(cost), constraints)
    problem.solve(solver="CLARABEL", tol_gap_abs=1e-10, tol_gap_rel=1e-10, tol_feas=1e-10)
    assert problem.status == "optimal", problem.status
    return float(problem.value)


def _solver(name, **options):
    cls = SOLVERS[name]
    return cls(**validate_params(f"solver ({name})", options, cls.params))


# tolerances, and the beta (fraction of max|X^T y|) of each method's test problem: the
# augmented Lagrangian needs 6e4 FISTA iterations at beta_frac = 0.05 (its optimum is
# degenerate: groups on extreme rays of their cones), 2e3 at 0.2
TOL = {"first_order": 1e-6, "interior_point": 1e-7}
BETA_FRAC = {"first_order": 0.2, "interior_point": 0.05}


@pytest.fixture(scope="module")
def problems():
    """``beta_frac -> (X, y, masks, beta, {cones: cvxpy optimum})``."""
    out = {}
    for frac in sorted(set(BETA_FRAC.values())):
        X, y, masks, beta = _data(beta_frac=frac)
        optima = {cones: _cvxpy_optimum(X, y, masks, beta, cones) for cones in (False, True)}
        out[frac] = X, y, masks, beta, optima
    return out


@pytest.fixture(scope="module")
def small(problems):
    return problems[BETA_FRAC["interior_point"]]


def test_masked_products_equal_explicit_pattern_products():
    X, y, masks, _ = _data(n=12, d=3, P=5)
    rng = np.random.default_rng(1)
    Z = rng.standard_normal((3, 10))
    r = rng.standard_normal(12)
    M, layout = signed_masks(masks, cones=True)
    assert layout == "pairs" and M.shape == (12, 10)
    D = [np.diag(M[:, j]) for j in range(10)]  # signed D_i, explicitly
    explicit = sum(D[j] @ X @ Z[:, j] for j in range(10))
    np.testing.assert_allclose(masked_forward(X, M, Z), explicit, rtol=1e-12, atol=1e-12)
    for j in range(10):
        np.testing.assert_allclose(masked_adjoint(X, M, r)[:, j], (D[j] @ X).T @ r, atol=1e-12)
    # ||A||^2 by power iteration against the dense operator [D_1 X, ..., D_G X]
    A = np.hstack([D[j] @ X for j in range(10)])
    np.testing.assert_allclose(operator_norm_squared(X, M), np.linalg.norm(A, 2) ** 2, rtol=1e-5)


def test_block_soft_threshold_is_the_group_prox():
    rng = np.random.default_rng(2)
    Z = rng.standard_normal((4, 6))
    t = 0.8 * float(np.median(group_norms(Z)))
    out = block_soft_threshold(Z, t)
    for j in range(6):  # argmin_u t ||u|| + 1/2 ||u - z||^2, checked by optimality
        u, z = out[:, j], Z[:, j]
        if np.linalg.norm(z) <= t:
            assert np.all(u == 0)
        else:
            np.testing.assert_allclose(u - z + t * u / np.linalg.norm(u), 0, atol=1e-12)


@pytest.mark.parametrize("method", ["interior_point", "first_order"])
@pytest.mark.parametrize("cones", [False, True])
def test_solution_agrees_with_cvxpy_and_the_gap_certifies(problems, method, cones):
    X, y, masks, beta, optima = problems[BETA_FRAC[method]]
    V, Wn, log = solve(X, y, masks, beta, cones=cones, method=method, tol=TOL[method])
    best = optima[cones]
    program = ConvexProgram(X, y, masks, beta, cones=cones)
    assert log["converged"]
    assert log["objective"] == pytest.approx(objective(program, V, Wn), rel=1e-12)
    assert abs(log["objective"] - best) <= 1e-4 * best
    # the certificate: objective - optimum <= gap, dual bound <= optimum
    assert log["objective"] - best <= log["gap"] + 1e-9 * best
    assert log["dual"] <= best * (1 + 1e-9)
    assert log["gap"] <= TOL[method] * log["objective"]
    if cones:
        assert cone_violation(program, V, Wn) <= 1e-6 * np.max(np.abs(y))
        assert log["violation"] == pytest.approx(cone_violation(program, V, Wn), abs=1e-15)
        # the program's own certificate at the returned multipliers
        assert duality_gap(program, V, Wn, log["multipliers"]) <= 1e-5 * best


@pytest.mark.parametrize("method", ["interior_point", "first_order"])
def test_certificate_bounds_the_suboptimality_at_every_step(problems, method):
    X, y, masks, beta, optima = problems[BETA_FRAC[method]]
    program = ConvexProgram(X, y, masks, beta, cones=True)
    solver = _solver(method, tol=TOL[method])
    solver.start(program)
    best, previous_dual = optima[True], 0.0
    for _ in range(2000):
        numbers = solver.step()
        assert set(numbers) >= {"objective", "gap", "violation"}
        assert all(isinstance(v, float) for v in numbers.values())
        dual = numbers["objective"] - numbers["gap"]
        assert dual <= best * (1 + 1e-9)  # a true lower bound, at every step
        assert dual >= previous_dual - 1e-15 * best  # the best bound met is kept
        previous_dual = dual
        if numbers["violation"] <= 1e-9 * np.max(np.abs(y)):  # (nearly) feasible point
            assert numbers["objective"] - best <= numbers["gap"] + 1e-7 * best
        if solver.done:
            break
    assert solver.done


def test_kkt_conditions_of_the_gated_group_lasso(small):
    X, y, masks, beta, _ = small
    V, Wn, log = solve(X, y, masks, beta, cones=False, method="interior_point", tol=1e-7)
    U = V - Wn
    r = np.einsum("np,np->n", masks, X @ U) - y
    G = X.T @ (masks * r[:, None])  # X^T D_i r, one column per pattern
    norms = group_norms(U)
    active = norms > 1e-6 * norms.max()
    assert active.any() and not active.all()
    for i in range(masks.shape[1]):
        g = np.linalg.norm(G[:, i])
        if active[i]:  # -X^T D_i r = beta u_i / ||u_i||
            np.testing.assert_allclose(-G[:, i], beta * U[:, i] / norms[i], atol=1e-3 * beta)
        else:
            assert g <= beta * (1 + 1e-3)


def test_kkt_conditions_of_the_exact_program_at_the_multipliers(small):
    X, y, masks, beta, _ = small
    V, Wn, log = solve(X, y, masks, beta, cones=True, method="interior_point", tol=1e-7)
    lam, mu = log["multipliers"]
    S = np.where(masks, 1.0, -1.0)
    r = np.einsum("np,np->n", masks, X @ (V - Wn)) - y
    scale = float(np.max(np.abs(y)))
    assert lam.min() >= 0 and mu.min() >= 0
    for U, L, sign in ((V, lam, 1.0), (Wn, mu, -1.0)):
        # stationarity: X^T (sign D_i r - S_i lam_i) + beta u_i/||u_i|| = 0, or norm <= beta
        Gam = X.T @ (sign * masks * r[:, None] - S * L)
        norms = group_norms(U)
        active = norms > 1e-6 * max(group_norms(V).max(), group_norms(Wn).max())
        for i in range(masks.shape[1]):
            if active[i]:
                np.testing.assert_allclose(-Gam[:, i], beta * U[:, i] / norms[i], atol=1e-3 * beta)
            else:
                assert np.linalg.norm(Gam[:, i]) <= beta * (1 + 1e-3)
        # feasibility and complementary slackness
        C = S * (X @ U)
        assert C.min() >= -1e-8 * scale
        assert np.abs(L * C).max() <= 1e-6 * beta * scale


def test_signs_keep_one_group_per_pattern():
    X, y, masks, beta = _data(seed=3)
    signs = np.where(np.arange(masks.shape[1]) % 3 == 0, -1, 1)
    best = _cvxpy_optimum(X, y, masks, beta, True, signs)
    V, Wn, log = solve(X, y, masks, beta, cones=True, signs=signs, tol=1e-7)
    assert np.all(V[:, signs < 0] == 0) and np.all(Wn[:, signs > 0] == 0)
    assert abs(log["objective"] - best) <= 1e-5 * best
    program = ConvexProgram(X, y, masks, beta, cones=True, signs=signs)
    assert log["objective"] == pytest.approx(objective(program, V, Wn), rel=1e-12)


def test_gated_solution_splits_each_group_by_its_cone_violation(small):
    X, y, masks, beta, optima = small
    V, Wn, log = solve(X, y, masks, beta, cones=False, tol=1e-7)
    assert not np.any((group_norms(V) > 0) & (group_norms(Wn) > 0))  # one of v_i, w_i
    S = np.where(masks, 1.0, -1.0)
    U = V - Wn
    C = S * (X @ U)
    for i in np.flatnonzero(group_norms(U) > 0):
        as_v, as_w = max(0.0, -C[:, i].min()), max(0.0, C[:, i].max())
        assert (as_v <= as_w) == (group_norms(V)[i] > 0)


@pytest.mark.parametrize(
    "method, cones, k",
    [("first_order", False, 37), ("first_order", True, 3), ("interior_point", True, 6)],
)
def test_resume_from_state_dict_is_bitwise_exact(problems, method, cones, k):
    X, y, masks, beta, _ = problems[BETA_FRAC[method]]
    program = ConvexProgram(X, y, masks, beta, cones=cones)
    whole = _solver(method)
    whole.start(program)
    first = _solver(method)
    first.start(program)
    for _ in range(k):
        whole.step()
        first.step()
    state = through_checkpoint(first.state_dict())
    second = _solver(method)
    second.start(program)
    second.load_state_dict(state)
    for _ in range(5):
        a, b = whole.step(), second.step()
        assert a == b
    for key in ("V", "Wn"):
        assert np.array_equal(whole.solution()[key], second.solution()[key])
    assert whole.done == second.done


def test_a_program_without_groups_is_certified_at_once():
    X, y, _, beta = _data()
    for name in SOLVERS:
        solver = _solver(name)
        solver.start(ConvexProgram(X, y, np.zeros((len(y), 0), dtype=bool), beta))
        assert solver.done
        numbers = solver.step()
        assert numbers["gap"] == 0.0 and numbers["objective"] == pytest.approx(0.5 * y @ y)


def test_refusals():
    X, y, masks, _ = _data()
    with pytest.raises(ConvexSolverError, match="beta > 0"):
        GroupLassoAPG(X, y, masks, 0.0, cones=False)
    with pytest.raises(ConvexSolverError, match="tol >= 1e-07"):
        ConicInteriorPoint(X, y, masks, 1.0, cones=False, tol=1e-9)


def test_gated_schur_complement_closed_form_equals_its_definition():
    """Without cones N = I + sum_j A_j [B_j^-1]_zz A_j^T with B_j = W_j^-2 (NT scaling)."""
    from plugins.convex._first_order import _boost_matrices, _jnorm

    rng = np.random.default_rng(0)
    n, d, G = 8, 3, 5
    X = rng.standard_normal((n, d))
    M = (rng.random((n, G)) < 0.5) * rng.choice([-1.0, 1.0], size=G)  # signed masks
    engine = ConicInteriorPoint(X, rng.standard_normal(n), M, 0.1, False)
    engine.step()
    engine.step()
    s = np.vstack([engine.t[None], engine.Z])
    sb, lb = s / _jnorm(s), engine.lq / _jnorm(engine.lq)
    gamma = np.sqrt(0.5 * (1 + np.einsum("ig,ig->g", sb, lb)))
    v = (sb + engine.J[:, None] * lb) / (2 * gamma)
    eta = np.sqrt(_jnorm(s) / _jnorm(engine.lq))
    W_inv = _boost_matrices(engine.J[:, None] * v) / eta[:, None, None]
    B_inv = np.linalg.inv(W_inv @ W_inv)
    expected = np.eye(n)
    for j in range(G):
        A = M[:, j, None] * X
        expected += A @ B_inv[j][1:, 1:] @ A.T
    N = engine._gated_schur(X, M, v, eta)
    np.testing.assert_allclose(N, expected, rtol=1e-9, atol=1e-9 * np.abs(expected).max())
