"""The working-set solver: interior point on a few groups, certified over all of them.

Numbers checked come from the mathematics: the exact cone test is the KKT system of
the projection onto the cone (feasible, non-negative multipliers, complementary);
the batched bounds are upper bounds of it; the working-set solution equals the full
interior point's and an independent cvxpy formulation's optimum; its duality gap,
recomputed by :func:`plugins.convex._program.duality_gap` over every group, certifies
it; every group left out passes the exact optimality test of a zero group; a solve
resumed from its state is bit-for-bit the uninterrupted one.
"""

import functools

import numpy as np
import pytest
from convex_cases import planted_problem, through_checkpoint

from core.params import validate_params
from plugins.convex import SOLVERS
from plugins.convex._first_order import signed_masks, solve
from plugins.convex._program import ConvexProgram, ConvexSolverError, duality_gap, objective
from plugins.convex._working_set import (
    WorkingSet,
    WorkingSetEngine,
    polar_bounds,
    polar_distance,
    solve_working_set,
)

_data = functools.partial(planted_problem, n=40, d=4, P=16)


def _solver(**options):
    return WorkingSet(**validate_params("solver (working_set)", options, WorkingSet.params))


def test_the_exact_cone_test_solves_the_projection_onto_the_cone():
    """rho = ||Pi_K(-grad)||: u = -grad + X^T(s lam) is in K, lam >= 0, lam _|_ slack."""
    rng = np.random.default_rng(1)
    X = rng.standard_normal((30, 5))
    for _ in range(5):
        s = np.where(X @ rng.standard_normal(5) >= 0, 1.0, -1.0)
        grad = rng.standard_normal(5)
        rho, lam = polar_distance(X, s, grad)
        u = -grad + X.T @ (s * lam)
        slack = s * (X @ u)
        assert np.all(lam >= 0)
        assert slack.min() >= -1e-10  # u in K
        assert abs(lam @ slack) <= 1e-10 * (1 + np.abs(lam).sum())  # complementary
        assert rho == pytest.approx(np.linalg.norm(u), rel=1e-10)
        # no point of K is closer to -grad (random feasible points, and scaled u)
        for t in (0.5, 0.9, 1.1, 2.0):
            assert np.linalg.norm(t * u + grad) >= np.linalg.norm(u + grad) - 1e-12


def test_batched_bounds_are_upper_bounds_close_to_the_exact_test():
    rng = np.random.default_rng(2)
    X = rng.standard_normal((50, 6)) / np.sqrt(50)
    S = np.where(X @ rng.standard_normal((6, 12)) >= 0, 1.0, -1.0)
    B = rng.standard_normal((6, 12))
    bounds, Lam = polar_bounds(X, S, B, iters=5000, rtol=1e-13)
    exact = np.array([polar_distance(X, S[:, j], B[:, j])[0] for j in range(12)])
    assert np.all(Lam >= 0)
    np.testing.assert_allclose(bounds, np.linalg.norm(B - X.T @ (S * Lam), axis=0), rtol=1e-12)
    assert np.all(bounds >= exact - 1e-12)
    np.testing.assert_allclose(bounds, exact, rtol=1e-4, atol=1e-8)


@pytest.mark.parametrize("beta_frac", [0.05, 0.3])
@pytest.mark.parametrize("cones", [True, False])
def test_working_set_solution_equals_the_full_solve_and_is_certified(beta_frac, cones):
    X, y, masks, beta = _data(beta_frac=beta_frac)
    tol = 1e-6
    V, Wn, log = solve_working_set(X, y, masks, beta, cones=cones, tol=tol, initial=2)
    _, _, full = solve(X, y, masks, beta, cones=cones, tol=1e-7)
    assert log["converged"] and full["converged"]
    if beta_frac == 0.05:
        assert log["rounds"] >= 2  # the first working set (2 groups) was not enough
    program = ConvexProgram(X, y, masks, beta, cones=cones)
    value = objective(program, V, Wn)
    assert value == pytest.approx(log["objective"], rel=1e-12)
    assert abs(value - full["objective"]) <= 2e-6 * full["objective"]
    # the certificate over every group, recomputed independently
    gap = duality_gap(program, V, Wn, log.get("multipliers"))
    assert 0.0 <= log["gap"] <= tol * log["objective"]
    assert -1e-12 <= gap <= tol * value
    assert log["violation"] <= 1e-6 * np.abs(y).max()


def test_groups_left_out_pass_the_exact_test_of_a_zero_group():
    X, y, masks, beta = _data(beta_frac=0.3)
    M, _ = signed_masks(masks, True)
    engine = WorkingSetEngine(X, y, M, beta, True, tol=1e-6, initial=2)
    while not engine.done:
        engine.step()
    out = np.flatnonzero(~engine.ws)
    assert out.size > 0  # the point of the method: some groups never entered
    r = np.einsum("ng,ng->n", M, engine.XZ) - y
    S = 2 * np.abs(M) - 1
    for j in out:
        rho, _ = polar_distance(X, S[:, j], X.T @ (M[:, j] * r))
        assert rho <= beta * (1 + 1e-6)


def test_agrees_with_an_independent_cvxpy_formulation():
    cp = pytest.importorskip("cvxpy")
    X, y, masks, beta = _data(beta_frac=0.1)
    n, d = X.shape
    P = masks.shape[1]
    M = masks.astype(float)
    S = 2 * M - 1
    V, W = cp.Variable((d, P)), cp.Variable((d, P))
    pred = cp.sum(cp.multiply(M, X @ V) - cp.multiply(M, X @ W), axis=1)
    cost = 0.5 * cp.sum_squares(pred - y) + beta * (
        cp.sum(cp.norm(V, 2, axis=0)) + cp.sum(cp.norm(W, 2, axis=0))
    )
    problem = cp.Problem(
        cp.Minimize(cost), [cp.multiply(S, X @ V) >= 0, cp.multiply(S, X @ W) >= 0]
    )
    problem.solve(solver="CLARABEL", tol_gap_abs=1e-9, tol_gap_rel=1e-9, tol_feas=1e-9)
    assert problem.status == "optimal", problem.status
    _, _, log = solve_working_set(X, y, masks, beta, cones=True, tol=1e-6, initial=3)
    assert log["objective"] == pytest.approx(problem.value, rel=1e-5)


@pytest.mark.parametrize("k", [5, 40])  # inside the first round, in a later round
def test_resume_from_state_dict_is_bitwise_exact(k):
    X, y, masks, beta = _data(beta_frac=0.3)
    program = ConvexProgram(X, y, masks, beta, cones=True)
    whole, first = _solver(initial=2), _solver(initial=2)
    whole.start(program)
    first.start(program)
    for _ in range(k):
        whole.step()
        first.step()
    second = _solver(initial=2)
    second.start(program)
    second.load_state_dict(through_checkpoint(first.state_dict()))
    while not whole.done:
        assert whole.step() == second.step()
    assert second.done
    for key in ("V", "Wn", "lam", "mu"):
        assert np.array_equal(whole.solution()[key], second.solution()[key])


def test_plugin_is_registered_and_refuses_a_tol_below_the_interior_points():
    assert WorkingSet in SOLVERS
    X, y, masks, beta = _data()
    M, _ = signed_masks(masks, True)
    with pytest.raises(ConvexSolverError, match="working_set needs tol"):
        WorkingSetEngine(X, y, M, beta, True, tol=1e-7)


def test_a_resume_with_a_smaller_tol_goes_on_to_it():
    X, y, masks, beta = _data(beta_frac=0.3)
    program = ConvexProgram(X, y, masks, beta, cones=True)
    loose = _solver(initial=2, tol=1e-3)
    loose.start(program)
    while not loose.done:
        loose.step()
    tight = _solver(initial=2, tol=1e-6)
    tight.start(program)
    tight.load_state_dict(through_checkpoint(loose.state_dict()))
    assert not tight.done
    while not tight.done:
        numbers = tight.step()
    assert numbers["gap"] <= 1e-6 * numbers["objective"]
