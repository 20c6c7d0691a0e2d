"""Min-norm skip-connection programs (Wang et al. 2022): feasibility, recovery, the LP."""

import itertools

import numpy as np
import pytest

pytest.importorskip("cvxpy")

from plugins.convex._min_norm import (  # noqa: E402
    all_ones_attainable,
    all_ones_index,
    cone_violation,
    fresh_distance,
    interpolation_error,
    min_norm_objective,
    network_objective,
    network_of,
    recovery,
    solve_min_norm,
)
from plugins.convex._patterns import sampled_patterns  # noqa: E402


def planted(n, d, seed):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)) / np.sqrt(n)
    w = rng.standard_normal(d)
    w /= np.linalg.norm(w)
    masks = sampled_patterns(X, max(n, 50), rng)
    if all_ones_attainable(X) and all_ones_index(masks) is None:
        masks = np.hstack([masks, np.ones((n, 1), dtype=bool)])
    return X, X @ w, w, masks


def brute_force_cone(X, tol=1e-9):
    """Whether {g : X g >= 0} has g != 0: a null vector, or an extreme ray of the cone.

    With X injective the cone is pointed; if non-trivial it has an extreme ray, on
    which d - 1 independent rows are tight: try every such subset and both signs.
    """
    n, d = X.shape
    if np.linalg.matrix_rank(X) < d:
        return True
    if d == 1:
        return bool(np.all(X >= 0) or np.all(X <= 0))
    for rows in itertools.combinations(range(n), d - 1):
        _, s, Vt = np.linalg.svd(X[list(rows)])
        if np.sum(s > 1e-10) < d - 1:
            continue
        r = Vt[-1]
        for sign in (1.0, -1.0):
            if np.all(sign * X @ r >= -tol):
                return True
    return False


@pytest.mark.parametrize("cones", [False, True])
@pytest.mark.parametrize("n, d, seed", [(40, 4, 0), (8, 12, 1), (15, 6, 2)])
def test_solution_interpolates_and_meets_cones(n, d, seed, cones):
    X, y, w, masks = planted(n, d, seed)
    sol = solve_min_norm(X, y, masks, cones=cones)
    assert sol["status"] in ("optimal", "optimal_inaccurate")
    assert interpolation_error(X, y, masks, sol["w0"], sol["W"]) < 1e-7
    # optimal: no worse than the planted point (w0 = w, W = 0), which is feasible
    assert min_norm_objective(sol["w0"], sol["W"]) <= 1.0 + 1e-7
    if cones:
        assert cone_violation(X, masks, sol["W"]) < 1e-8
        U, a = network_of(sol["w0"], sol["W"])  # the ReLU network reproduces the fit
        assert np.allclose(np.maximum(X @ U, 0) @ a, y, atol=1e-7)


def test_gated_is_a_relaxation_of_the_exact_program():
    X, y, _, masks = planted(10, 6, 3)
    gated = solve_min_norm(X, y, masks, cones=False)
    exact = solve_min_norm(X, y, masks, cones=True)
    assert (
        min_norm_objective(gated["w0"], gated["W"])
        <= min_norm_objective(exact["w0"], exact["W"]) + 1e-7
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_recovers_when_n_well_above_d(seed):
    X, y, w, masks = planted(60, 4, seed)
    sol = solve_min_norm(X, y, masks)
    rec = recovery(sol["w0"], sol["W"], masks, w)
    assert rec["recovered_strict"] and rec["recovered_merged"]
    assert rec["w_error"] < 1e-4


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fails_when_n_well_below_d(seed):
    X, y, w, masks = planted(6, 30, seed)
    sol = solve_min_norm(X, y, masks)
    rec = recovery(sol["w0"], sol["W"], masks, w)
    assert not rec["recovered_strict"] and not rec["recovered_merged"]
    # the minimum-norm interpolant beats the planted vector: it cannot be w
    assert min_norm_objective(sol["w0"], sol["W"]) < 1.0 - 1e-3


def test_merged_test_accepts_a_split_with_the_all_ones_group():
    rng = np.random.default_rng(0)
    w = rng.standard_normal(3)
    masks = np.array([[True, True], [False, True]])
    W = np.zeros((3, 2))
    W[:, 1] = 0.5 * w  # the all-ones group holds half of w
    rec = recovery(0.5 * w, W, masks, w)
    assert not rec["recovered_strict"] and rec["recovered_merged"]
    assert rec["w_error_merged"] == pytest.approx(0.0)
    assert all_ones_index(masks) == 1


@pytest.mark.parametrize("n, d", [(3, 2), (5, 2), (6, 3), (8, 3), (2, 3), (9, 4)])
def test_attainability_lp_agrees_with_brute_force(n, d):
    rng = np.random.default_rng(10 * n + d)
    for trial in range(15):
        X = rng.standard_normal((n, d))
        if trial % 3 == 0:
            X[:, 0] = np.abs(X[:, 0]) + 0.1  # cone contains e_0: attainable
        assert all_ones_attainable(X) == brute_force_cone(X)


def test_attainability_edge_cases():
    assert all_ones_attainable(np.ones((3, 5)))  # n < d: null space
    X = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    assert not all_ones_attainable(X)  # the cone is {0}
    X = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]])
    assert all_ones_attainable(X)  # g = e_1: X g = (0, 0, 1) >= 0


# -- data plugin planted_linear ------------------------------------------------------


def planted_linear(**kw):
    from plugins.convex._data import PlantedLinear

    return PlantedLinear(**{**{p.name: p.default for p in PlantedLinear.params}, **kw})


@pytest.mark.parametrize("inputs", ["gaussian", "cubed", "whitened", "cubed_whitened"])
@pytest.mark.parametrize("planted_kind", ["smallest_singular", "gaussian"])
@pytest.mark.parametrize("n, d", [(30, 5), (5, 12)])
def test_planted_linear_shapes_and_labels(inputs, planted_kind, n, d):
    data = planted_linear(n=n, d=d, inputs=inputs, planted=planted_kind, noise=0.0).load(
        np.random.default_rng(0)
    )
    w = data.extras["w_star"]
    assert data.X.shape == (n, d) and data.Y.shape == (n,) and w.shape == (d,)
    assert np.linalg.norm(w) == pytest.approx(1.0)
    assert np.allclose(data.Y, data.X @ w)
    if inputs.endswith("whitened"):
        gram = data.X.T @ data.X if n >= d else data.X @ data.X.T
        assert np.allclose(gram, np.eye(min(n, d)))
    if planted_kind == "smallest_singular":
        s = np.linalg.svd(data.X, compute_uv=False)
        assert np.linalg.norm(data.X @ w) == pytest.approx(s[-1])


def test_planted_linear_inputs_scale_cube_and_noise():
    kw = dict(n=50, d=4, planted="gaussian")
    plain = planted_linear(**kw, inputs="gaussian").load(np.random.default_rng(1))
    cubed = planted_linear(**kw, inputs="cubed").load(np.random.default_rng(1))
    assert np.allclose(cubed.X, plain.X**3)  # same draw, cubed
    rng = np.random.default_rng(1)
    X = rng.standard_normal((50, 4)) / np.sqrt(50)
    assert np.allclose(plain.X, X)  # randn(n, d) / sqrt(n) from the data stream
    noisy = planted_linear(**kw, inputs="gaussian", noise=0.3).load(np.random.default_rng(1))
    r = noisy.Y - noisy.X @ noisy.extras["w_star"]
    w = rng.standard_normal(4)
    assert np.allclose(noisy.extras["w_star"], w / np.linalg.norm(w))
    assert np.allclose(r, 0.3 / np.sqrt(50) * rng.standard_normal(50))


# -- the algorithm min_norm, through the run loop ------------------------------------


def _run_config(runs_dir, n, d, **algorithm):
    return {
        "experiment": "min_norm_test",
        "seed": 3,
        "model": {"width": 1, "scaling": "standard", "loss": "mse"},
        "data": {"name": "planted_linear", "n": n, "d": d, "planted": "gaussian"},
        "init": {"name": "normal"},
        "algorithm": {"name": "min_norm", **algorithm},
        "stoppers": {"solved": {}, "max_steps": {"steps": 5}},
        "loggers": {"scalars": {"every": 1}, "snapshots": {"every": 1}},
        "savers": {"periodic": {"every_seconds": 0.0, "every_steps": 1}},
        "run": {"runs_dir": str(runs_dir), "display": "off"},
    }


@pytest.fixture(scope="module")
def registry():
    from core.registry import Registry

    return Registry(entry_points=False, plugin_modules=())


def test_exact_run_records_recovery_and_a_relu_network_that_fits(registry, tmp_path):
    from core.config import resolve
    from core.loop import resume_run, start_run

    run = start_run(
        resolve(_run_config(tmp_path, 12, 5, relaxation="none"), registry), "", registry
    )
    assert run.meta["status"] == "finished" and run.meta["reason"] == "solved"
    s = run.scalars
    assert s["interpolation_error"][-1] < 1e-7 and s["cone_violation"][-1] < 1e-8
    X, Y, w = run.problem["X"], run.problem["Y"], run.problem["extra.w_star"]
    W, a, active = (run.snapshots[k][-1] for k in ("W", "a", "active"))
    assert W.shape[1] == s["n_patterns"][-1] + 2  # padded: the skip pair and every group
    assert np.all(W[:, ~active] == 0) and np.all(a[~active] == 0)
    assert np.allclose(np.maximum(X @ W, 0) @ a, Y, atol=1e-7)  # under the cones: a fit
    assert s["loss"][-1] < 1e-12
    # the recorded error is ||w0 - w|| of the skip neuron (the first two ReLU neurons)
    w0 = W[:, 0] * a[0]
    assert s["w_error"][-1] == pytest.approx(np.linalg.norm(w0 - w), abs=1e-9)
    resumed = resume_run(run.path, registry, overrides=["stoppers.max_steps.steps=9"])
    assert resumed.meta["steps"] == run.meta["steps"]
    np.testing.assert_array_equal(resumed.snapshots["W"][-1], W)


# -- plain and normalisation-layer programs -------------------------------------------


@pytest.mark.parametrize("network", ["plain", "normalization"])
@pytest.mark.parametrize("cones", [False, True])
def test_every_network_interpolates_meets_cones_and_its_network_fits(network, cones):
    X, y, _, masks = planted(12, 4, 8)
    y = np.maximum(X @ np.array([1.0, -0.5, 0.3, 0.2]), 0) - 0.5 * y  # a ReLU teacher too
    sol = solve_min_norm(X, y, masks, cones=cones, network=network)
    W = sol["V"] - sol["Wn"]
    assert np.allclose(sol["W"], W) and np.all(sol["w0"] == 0)
    assert interpolation_error(X, y, masks, sol["w0"], W) < 1e-7
    assert sol["objective"] == pytest.approx(
        network_objective(X, masks, sol["w0"], sol["V"], sol["Wn"], network), rel=1e-9
    )
    if cones:
        assert cone_violation(X, masks, sol["V"]) < 1e-8
        assert cone_violation(X, masks, sol["Wn"]) < 1e-8
        U, a = network_of(sol["w0"], sol["V"], sol["Wn"])
        assert np.allclose(np.maximum(X @ U, 0) @ a, y, atol=1e-7)
    else:  # the gated program is a relaxation; its dual bound certifies it
        exact = solve_min_norm(X, y, masks, cones=True, network=network)
        assert sol["objective"] <= exact["objective"] + 1e-7
        assert sol["gap"] <= 1e-6 * sol["objective"]


def _unreduced_normalization(X, y, masks, cones):
    """The normalisation program before the SVD: norms ||D_i X v_i||, first-layer v_i.

    Exact form: v_i in the row space of D_i X (the reduced program's parametrisation
    v_i = V_i S_i^-1 a_i), cones (2 D_i - I) X v_i >= 0.
    """
    n, d = X.shape
    P = masks.shape[1]
    M = masks.astype(float)
    groups = [cp.Variable((d, P)) for _ in range(2 if cones else 1)]
    fit, cost, constraints = 0, 0, []
    for Z, sign in zip(groups, (1.0, -1.0)):
        for i in range(P):
            A = M[:, i, None] * X
            fit = fit + sign * (A @ Z[:, i])
            cost = cost + cp.norm(A @ Z[:, i], 2)
            if cones:
                _, s, vt = np.linalg.svd(A)
                null = vt[int(np.sum(s > 1e-10 * s[0])) :]
                constraints.append(cp.multiply(2 * M[:, i] - 1, X @ Z[:, i]) >= 0)
                if null.size:
                    constraints.append(null @ Z[:, i] == 0)
    problem = cp.Problem(cp.Minimize(cost), [fit == y, *constraints])
    problem.solve(solver="CLARABEL")
    return problem.value


cp = pytest.importorskip("cvxpy")


@pytest.mark.parametrize("cones", [False, True])
def test_normalization_program_equals_its_unreduced_form(cones):
    X, y, _, masks = planted(8, 3, 9)
    masks = masks[:, :10]
    y = np.maximum(X @ np.array([1.0, -0.5, 0.3]), 0)
    reduced = solve_min_norm(X, y, masks, cones=cones, network="normalization")
    assert reduced["objective"] == pytest.approx(
        _unreduced_normalization(X, y, masks, cones), rel=1e-6
    )


# -- solver choice, fallback, test distance -------------------------------------------


def test_fresh_distance_closed_form():
    rng = np.random.default_rng(0)
    X_test, w = rng.standard_normal((50, 4)), rng.standard_normal(4)
    masks = np.ones((3, 2), dtype=bool)
    assert fresh_distance(X_test, w, w, np.zeros((4, 2))) == pytest.approx(0.0, abs=1e-12)
    delta = 0.1 * rng.standard_normal(4)
    V = np.zeros((4, 2))
    V[:, 1] = np.abs(X_test).sum(axis=0)  # a ReLU neuron: relu(X_test v) adds to the fit
    f = X_test @ (w + delta) + np.maximum(X_test @ V[:, 1], 0)
    expected = np.sqrt(np.mean((f - X_test @ w) ** 2))
    assert fresh_distance(X_test, w, w + delta, V) == pytest.approx(expected, rel=1e-12)
    assert masks.shape == (3, 2)


def test_planted_linear_test_points_come_from_their_own_stream():
    base = planted_linear(n=30, d=5, planted="gaussian").load(np.random.default_rng(4))
    with_test = planted_linear(n=30, d=5, planted="gaussian", n_test=200).load(
        np.random.default_rng(4)
    )
    assert base.X_test is None
    np.testing.assert_array_equal(with_test.X, base.X)  # training data unchanged
    np.testing.assert_array_equal(with_test.Y, base.Y)
    w = with_test.extras["w_star"]
    assert with_test.X_test.shape == (200, 5)
    assert np.allclose(with_test.Y_test, with_test.X_test @ w)
    assert not np.allclose(with_test.X_test[:30], with_test.X)
    again = planted_linear(n=30, d=5, planted="gaussian", n_test=200).load(np.random.default_rng(4))
    np.testing.assert_array_equal(again.X_test, with_test.X_test)  # from the seed


def test_run_records_the_interior_point_and_the_test_distance(registry, tmp_path):
    from core.config import resolve
    from core.loop import start_run

    cfg = _run_config(tmp_path, 40, 5)
    cfg["data"]["n_test"] = 100
    run = start_run(resolve(cfg, registry), "", registry)
    s = run.scalars
    assert s["solver_code"][-1] == 0  # the interior point answered, certified
    assert 0 <= s["relative_gap"][-1] <= 1e-8
    assert s["interpolation_error"][-1] < 1e-8
    # the planted point's norm lies between the certified bounds when recovered
    assert s["recovered_merged"][-1] == 1
    assert s["planted_excess_min"][-1] <= 1e-8 and s["planted_excess_max"][-1] >= -1e-12
    W, a = run.snapshots["W"][-1], run.snapshots["a"][-1]
    X_test, w = run.problem["X_test"], run.problem["extra.w_star"]
    f = np.maximum(X_test @ W, 0) @ a
    assert s["test_distance"][-1] == pytest.approx(
        np.sqrt(np.mean((f - X_test @ w) ** 2)), abs=1e-12
    )
    assert s["test_distance"][-1] < 1e-6  # recovered: the planted function on fresh points


def test_uncertified_interior_point_falls_back_to_cvxpy(registry, tmp_path):
    from core.config import resolve
    from core.loop import start_run

    # a gap of 1e-16 is beyond rounding: never certified, cvxpy answers
    cfg = _run_config(tmp_path, 20, 5, solver="interior_point", tol=1e-16)
    run = start_run(resolve(cfg, registry), "", registry)
    s = run.scalars
    assert s["solver_code"][-1] == 1  # cvxpy's first choice (Clarabel)
    assert s["interpolation_error"][-1] < 1e-7
    from core.store import RunStore

    tried = RunStore(run.path).read_checkpoint()["algorithm"]["tried"]
    assert tried[0].startswith("interior_point (not certified")


def test_interior_point_with_cones_is_refused_naming_the_key(registry, tmp_path):
    from core.config import resolve
    from core.errors import ConfigError
    from core.loop import start_run

    cfg = _run_config(tmp_path, 20, 5, solver="interior_point", relaxation="none")
    with pytest.raises(ConfigError, match="solver='interior_point'"):
        start_run(resolve(cfg, registry), "", registry)


@pytest.mark.parametrize("network", ["plain", "normalization"])
def test_exact_plain_and_normalized_runs_recover_a_relu_network_that_fits(
    registry, tmp_path, network
):
    from core.config import resolve
    from core.loop import start_run

    cfg = _run_config(tmp_path, 12, 4, network=network, relaxation="none")
    run = start_run(resolve(cfg, registry), "", registry)
    s = run.scalars
    assert s["solver_code"][-1] == 1 and s["relative_gap"][-1] == -1  # cvxpy: no dual bound
    assert s["interpolation_error"][-1] < 1e-7 and s["cone_violation"][-1] < 1e-8
    X, Y = run.problem["X"], run.problem["Y"]
    W, a = run.snapshots["W"][-1], run.snapshots["a"][-1]
    assert W.shape[1] == 2 * s["n_patterns"][-1] + 2  # v_i and w_i of every pattern
    assert np.allclose(np.maximum(X @ W, 0) @ a, Y, atol=1e-7)  # the network fits
    # no skip neuron (w0 = 0 gives none): at most one neuron per group
    assert run.snapshots["active"][-1].sum() <= 2 * s["n_patterns"][-1]


def test_gated_plain_run_is_certified_by_the_interior_point(registry, tmp_path):
    from core.config import resolve
    from core.loop import start_run

    run = start_run(resolve(_run_config(tmp_path, 30, 5, network="plain"), registry), "", registry)
    s = run.scalars
    assert s["solver_code"][-1] == 0 and 0 <= s["relative_gap"][-1] <= 1e-8
    assert s["interpolation_error"][-1] < 1e-8
