"""Min-norm skip-connection programs (Wang et al. 2022): feasibility, recovery, the LP."""

import itertools

import numpy as np
import pytest

pytest.importorskip("cvxpy")

from plugins.convex._min_norm import (  # noqa: E402
    all_ones_attainable,
    all_ones_index,
    cone_violation,
    interpolation_error,
    min_norm_objective,
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
