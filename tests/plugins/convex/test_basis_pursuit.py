"""The certified interior point for group basis pursuit (the gated min-norm programs).

Numbers checked come from the mathematics: the optimality conditions of group
basis pursuit (dual feasibility ``||A_j^T theta|| <= 1``, ``A_j^T theta = z_j /
||z_j||`` on the non-zero groups, ``y . theta`` equal to the objective), exact
interpolation, the Schur complement against its definition with explicit ``D_j X``
blocks, agreement with an independent cvxpy/Clarabel solve, bit-for-bit resumption.
"""

import numpy as np
import pytest

from plugins.convex._basis_pursuit import (
    DenseGroups,
    GroupBasisPursuit,
    MaskedGroups,
    planted_certificate,
    solve_group_bp,
)
from plugins.convex._data import planted_inputs, planted_vector
from plugins.convex._min_norm import (
    all_ones_attainable,
    all_ones_index,
    dual_bound,
    interpolation_error,
    network_objective,
    recovery,
    solve_min_norm,
    solve_min_norm_ipm,
)
from plugins.convex._patterns import sampled_patterns


def planted(n, d, seed, kind="smallest_singular"):
    """The phase-transition data of a trial: X, y = X w, w, patterns (+ all-ones)."""
    rng = np.random.default_rng(seed)
    X = planted_inputs(n, d, "gaussian", rng)
    w = planted_vector(X, kind, rng)
    masks = sampled_patterns(X, max(n, 50), rng)
    if all_ones_attainable(X) and all_ones_index(masks) is None:
        masks = np.hstack([masks, np.ones((n, 1), dtype=bool)])
    return X, X @ w, w, masks


def _skip_groups(X, masks):
    return MaskedGroups(X, np.hstack([np.ones((X.shape[0], 1)), masks]))


@pytest.mark.parametrize("n, d, seed", [(40, 10, 0), (30, 10, 1), (20, 30, 2), (80, 20, 3)])
def test_optimality_conditions_hold_at_the_certified_solution(n, d, seed):
    X, y, _, masks = planted(n, d, seed)
    groups = _skip_groups(X, masks)
    res = solve_group_bp(groups, y, tol=1e-9)
    assert res["certified"] and res["error"] is None
    Z, theta = res["Z"], res["theta"]
    # primal feasible: interpolates
    assert np.linalg.norm(groups.apply(Z).sum(axis=1) - y) <= 1e-10 * max(1, np.linalg.norm(y))
    # dual feasible (to the certificate's accuracy) and strong duality
    G = groups.adjoint(theta)
    norms = np.linalg.norm(G, axis=0)
    assert norms.max() <= 1 + 1e-6
    objective = np.linalg.norm(Z, axis=0).sum()
    assert y @ theta == pytest.approx(objective, rel=1e-8)
    assert res["dual"] <= objective and objective - res["dual"] <= 1e-9 * objective
    # complementary slackness: a non-zero group is aligned with A_j^T theta
    big = np.linalg.norm(Z, axis=0) > 1e-6 * objective
    assert big.any()
    unit = Z[:, big] / np.linalg.norm(Z[:, big], axis=0)
    assert np.allclose(unit, G[:, big], atol=1e-4)


def test_schur_complement_equals_its_definition():
    rng = np.random.default_rng(4)
    n, d, G = 12, 3, 7
    X = rng.standard_normal((n, d))
    M = (rng.random((n, G)) < 0.6).astype(float)
    groups = MaskedGroups(X, M)
    dense = DenseGroups(np.stack([M[:, j, None] * X for j in range(G)]))
    engine = GroupBasisPursuit(groups, rng.standard_normal(n))
    engine.t = 1.0 + rng.random(G)
    engine.Z = 0.3 * rng.standard_normal((d, G))
    engine.lq[1:] = 0.3 * rng.standard_normal((d, G))
    _, v, eta, _ = engine._scaling()
    expected = np.zeros((n, n))
    for j in range(G):
        A = M[:, j, None] * X
        W2 = eta[j] ** 2 * (2 * np.outer(v[:, j], v[:, j]) - np.diag(engine.J))
        expected += A @ W2[1:, 1:] @ A.T
    L = np.tril(engine._schur(v, eta)[0])
    assert np.allclose(L @ L.T, expected, rtol=1e-10, atol=1e-12)
    # the masked and the dense groups are the same operator
    Z = rng.standard_normal((d, G))
    assert np.allclose(groups.apply(Z), dense.apply(Z))
    theta = rng.standard_normal(n)
    assert np.allclose(groups.adjoint(theta), dense.adjoint(theta))
    assert np.allclose(groups.gram(eta), dense.gram(eta))


@pytest.mark.parametrize("n, d, seed", [(40, 10, 0), (60, 10, 1), (30, 20, 2), (100, 20, 3)])
def test_interior_point_agrees_with_cvxpy(n, d, seed):
    pytest.importorskip("cvxpy")
    X, y, w, masks = planted(n, d, seed)
    fast = solve_min_norm_ipm(X, y, masks)
    ref = solve_min_norm(X, y, masks)
    assert fast["certified"] and fast["solver"] == "interior_point"
    assert fast["objective"] == pytest.approx(ref["objective"], rel=1e-4)
    # each objective is within the other's certified bounds
    assert fast["dual"] <= ref["objective"] + 1e-9 and ref["dual"] <= fast["objective"] + 1e-9
    assert interpolation_error(X, y, masks, fast["w0"], fast["W"]) < 1e-9
    # the recovery decisions agree (merged: the split with the all-ones group is free)
    a = recovery(fast["w0"], fast["W"], masks, w)
    b = recovery(ref["w0"], ref["W"], masks, w)
    assert a["recovered_merged"] == b["recovered_merged"]
    assert a["w_error_merged"] == pytest.approx(b["w_error_merged"], abs=1e-5)


@pytest.mark.parametrize("network", ["plain", "normalization"])
def test_other_networks_agree_with_cvxpy(network):
    pytest.importorskip("cvxpy")
    X, y, _, masks = planted(20, 5, 5)
    fast = solve_min_norm_ipm(X, y, masks, network=network)
    ref = solve_min_norm(X, y, masks, network=network)
    assert fast["certified"]
    assert fast["objective"] == pytest.approx(ref["objective"], rel=1e-6)
    value = network_objective(X, masks, fast["w0"], fast["V"], fast["Wn"], network)
    assert value == pytest.approx(fast["objective"], rel=1e-8)
    assert interpolation_error(X, y, masks, fast["w0"], fast["W"]) < 1e-8


def test_dual_bound_of_any_theta_is_below_the_optimum():
    X, y, _, masks = planted(30, 8, 6)
    res = solve_min_norm_ipm(X, y, masks)
    rng = np.random.default_rng(0)
    for _ in range(5):
        assert dual_bound(X, y, masks, rng.standard_normal(30)) <= res["objective"] + 1e-12
    cert = planted_certificate(1.0, res["objective"], res["dual"])
    assert cert["planted_excess_min"] <= cert["planted_excess_max"]


def test_resume_is_bitwise():
    X, y, _, masks = planted(30, 6, 7)
    groups = _skip_groups(X, masks)
    full = GroupBasisPursuit(groups, y)
    for _ in range(8):
        full.step()
    half = GroupBasisPursuit(groups, y)
    for _ in range(4):
        half.step()
    state = {
        k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in half.state_dict().items()
    }
    resumed = GroupBasisPursuit(groups, y)
    resumed.load_state_dict(state)
    for _ in range(4):
        resumed.step()
    np.testing.assert_array_equal(resumed.Z, full.Z)
    np.testing.assert_array_equal(resumed.theta, full.theta)
    assert resumed.report() == full.report()
