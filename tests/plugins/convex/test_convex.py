"""The convex program, the cvxpy solver and the ``convex`` algorithm.

Numbers checked come from the mathematics: the convex optimum equals the non-convex
regularised objective of the recovered network; the KKT conditions hold at the
solver's multipliers; two solvers agree; gradient descent with weight decay on the
same objective stays above the optimum and reaches it; the loss conventions map
onto each other as documented.
"""

import subprocess
import sys

import numpy as np
import pytest

from core.components import Problem
from core.config import resolve
from core.loop import resume_run, start_run
from core.model import loss as model_loss
from core.params import validate_params
from core.registry import Registry
from plugins.convex import (
    ConvexProgram,
    ConvexSolverError,
    CvxpySolver,
    cone_violation,
    duality_gap,
    exact_patterns,
    nonconvex_objective,
    objective,
    predict,
    program_beta,
    recover_network,
)
from plugins.convex._program import data_gradient, group_norms, loss_scale

pytest.importorskip("cvxpy")

MODULES = [
    "plugins.stoppers",
    "plugins.loggers",
    "plugins.savers",
    "plugins.metrics",
    "plugins.data",
    "plugins.inits",
    "plugins.gd",
    "plugins.convex",
]


@pytest.fixture(scope="module")
def registry():
    return Registry(builtins=MODULES, entry_points=False)


def _sinus(n):
    x = np.linspace(-0.5, 0.5, n)
    return np.column_stack([x, np.ones(n)]), np.sin(10 * x - np.pi / 2) + 0.2 * x - 0.5


def _solver(**options):
    return CvxpySolver(**validate_params("solver (cvxpy)", options, CvxpySolver.params))


def _solve(program, **options):
    solver = _solver(**options)
    solver.start(program)
    numbers = solver.step()
    return solver, numbers


@pytest.fixture(scope="module")
def solved():
    """Exact patterns on 12 sinus points, with cones, solved by Clarabel."""
    X, y = _sinus(12)
    program = ConvexProgram(X, y, exact_patterns(X), beta=0.05)
    solver, numbers = _solve(program)
    return program, solver, numbers


# -- the program's functions ------------------------------------------------------------


def test_program_functions_against_dense_sums():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(7, 3)), rng.normal(size=7)
    masks = rng.random((7, 5)) < 0.5
    V, Wn = rng.normal(size=(3, 5)), rng.normal(size=(3, 5))
    program = ConvexProgram(X, y, masks, beta=0.3)
    dense = sum(np.diag(masks[:, i]) @ X @ (V[:, i] - Wn[:, i]) for i in range(5))
    np.testing.assert_allclose(predict(program, V, Wn), dense, rtol=1e-13)
    norms = sum(np.linalg.norm(V[:, i]) + np.linalg.norm(Wn[:, i]) for i in range(5))
    expected = 0.5 * np.sum((dense - y) ** 2) + 0.3 * norms
    assert objective(program, V, Wn) == pytest.approx(expected, rel=1e-13)
    # data gradient: finite differences of the data term
    h, E = 1e-6, np.zeros_like(V)
    E[1, 2] = 1.0
    data = lambda V_: 0.5 * np.sum((predict(program, V_, Wn) - y) ** 2)  # noqa: E731
    fd = (data(V + h * E) - data(V - h * E)) / (2 * h)
    assert data_gradient(program, V, Wn)[1, 2] == pytest.approx(fd, rel=1e-7)
    # cone violation: the most negative (2 D_i - I) X u_i
    S = np.where(masks, 1.0, -1.0)
    worst = max(0.0, -min((S * (X @ V)).min(), (S * (X @ Wn)).min()))
    assert cone_violation(program, V, Wn) == worst


def test_program_validates_its_arrays():
    X, y = np.ones((3, 2)), np.zeros(3)
    with pytest.raises(ValueError, match="masks"):
        ConvexProgram(X, y, np.ones((4, 2), dtype=bool))
    with pytest.raises(ValueError, match="beta"):
        ConvexProgram(X, y, np.ones((3, 2), dtype=bool), beta=-1.0)
    with pytest.raises(ValueError, match="signs"):
        ConvexProgram(X, y, np.ones((3, 2), dtype=bool), signs=[1, 0])
    program = ConvexProgram(X, y, np.ones((3, 2), dtype=bool), signs=[1, -1])
    assert list(program.has_v) == [True, False] and program.n_groups == 2


def test_recovery_is_balanced_and_reproduces_the_fit_under_the_cones():
    rng = np.random.default_rng(1)
    X = np.column_stack([rng.normal(size=6), np.ones(6)])
    U = rng.normal(size=(2, 2))
    masks = X @ U >= 0  # u_i lies in its own pattern's cone, so do its multiples
    V = U * [1.0, 2.0]
    Wn = np.column_stack([np.zeros(2), 0.5 * U[:, 1]])
    program = ConvexProgram(X, rng.normal(size=6), masks, beta=0.7)
    assert cone_violation(program, V, Wn) == 0.0
    W, a = recover_network(V, Wn, tol=0.0)
    assert W.shape == (2, 3) and np.all(a[:2] > 0) and a[2] < 0
    np.testing.assert_allclose(np.sum(W * W, axis=0), a * a, rtol=1e-13)
    np.testing.assert_allclose(a * a, [*group_norms(V), group_norms(Wn)[1]], rtol=1e-13)
    np.testing.assert_allclose(np.maximum(X @ W, 0) @ a, predict(program, V, Wn), atol=1e-13)
    assert nonconvex_objective(X, program.y, W, a, 0.7) == pytest.approx(
        objective(program, V, Wn), rel=1e-13
    )


# -- the cvxpy solution -------------------------------------------------------------------


def test_convex_optimum_equals_the_recovered_networks_objective(solved):
    program, solver, numbers = solved
    V, Wn = solver.solution()["V"], solver.solution()["Wn"]
    W, a = recover_network(V, Wn, tol=1e-9 * max(group_norms(V).max(), group_norms(Wn).max()))
    assert 0 < W.shape[1] < program.n_groups
    value = nonconvex_objective(program.X, program.y, W, a, program.beta)
    assert value == pytest.approx(numbers["objective"], rel=1e-6)
    assert numbers["objective"] == pytest.approx(objective(program, V, Wn), rel=1e-12)
    assert numbers["cone_violation"] <= 1e-8
    assert solver.done and solver.info["solver"] == "CLARABEL"
    assert solver.info["status"] == "optimal" and numbers["status_code"] == 0.0


def test_kkt_conditions_hold_at_the_solvers_multipliers(solved):
    """Stationarity, dual feasibility and complementary slackness, group by group."""
    program, solver, _ = solved
    V, Wn = solver.solution()["V"], solver.solution()["Wn"]
    lam, mu = solver.multipliers
    X, D, S, beta = program.X, program.masks, program.orientation, program.beta
    r = predict(program, V, Wn) - program.y
    assert lam.min() >= -1e-9 and mu.min() >= -1e-9
    scale = beta * np.abs(X).max()
    for U, multipliers, sign in ((V, lam, 1.0), (Wn, mu, -1.0)):
        # d/du_i of the Lagrangian: sign X^T D_i r - X^T S_i lambda_i + beta u_i/|u_i|
        G = sign * X.T @ (D * r[:, None]) - X.T @ (S * multipliers)
        norms = group_norms(U)
        big = norms > 1e-6 * norms.max()
        np.testing.assert_allclose(
            G[:, big], -beta * U[:, big] / norms[big], atol=1e-6 * scale, rtol=0
        )
        assert np.all(group_norms(G[:, ~big]) <= beta * (1 + 1e-6))
        slack = np.abs(multipliers * (S * (X @ U)))
        assert slack.max() <= 1e-7 * max(1.0, np.abs(program.y).max())


def test_duality_gap_certifies_and_bounds_suboptimality(solved):
    program, solver, numbers = solved
    V, Wn = solver.solution()["V"], solver.solution()["Wn"]
    best = numbers["objective"]
    assert numbers["duality_gap"] <= 1e-8 * best
    # without the multipliers the bound stays valid (a smaller dual feasible set)
    assert duality_gap(program, V, Wn) >= -1e-12
    # a feasible but suboptimal point: its gap bounds its distance to the optimum
    for factor in (0.5, 0.9, 1.2):
        gap = duality_gap(program, factor * V, factor * Wn, solver.multipliers)
        assert objective(program, factor * V, factor * Wn) - best <= gap + 1e-12
        assert gap > 0


def test_gated_relaxation_is_a_lower_bound_and_its_gap_closes():
    X, y = _sinus(12)
    masks = exact_patterns(X)
    cones = _solve(ConvexProgram(X, y, masks, beta=0.05))[1]["objective"]
    gated_program = ConvexProgram(X, y, masks, beta=0.05, cones=False)
    solver, gated = _solve(gated_program)
    assert gated["objective"] <= cones * (1 + 1e-8)
    assert gated["duality_gap"] <= 1e-8 * gated["objective"]
    # any network, the gated one's included, is at or above the exact optimum
    W, a = recover_network(solver.solution()["V"], solver.solution()["Wn"], tol=1e-9)
    assert nonconvex_objective(X, y, W, a, 0.05) >= cones * (1 - 1e-8)


def test_two_solvers_agree():
    X, y = _sinus(8)
    program = ConvexProgram(X, y, exact_patterns(X), beta=0.1)
    clarabel = _solve(program)[1]["objective"]
    scs_solver, scs = _solve(program, solver="SCS", fallback=[], eps=1e-9)
    assert scs_solver.info["solver"] == "SCS"
    assert scs["objective"] == pytest.approx(clarabel, rel=1e-6)


def test_signs_keep_one_group_per_pattern():
    X, y = _sinus(10)
    masks = exact_patterns(X)
    signs = np.where(np.arange(masks.shape[1]) % 2 == 0, 1, -1)
    program = ConvexProgram(X, y, masks, beta=0.05, signs=signs)
    solver, numbers = _solve(program)
    V, Wn = solver.solution()["V"], solver.solution()["Wn"]
    assert np.all(V[:, signs < 0] == 0) and np.all(Wn[:, signs > 0] == 0)
    assert numbers["duality_gap"] <= 1e-8 * numbers["objective"]
    both = _solve(ConvexProgram(X, y, masks, beta=0.05))[1]["objective"]
    assert numbers["objective"] >= both * (1 - 1e-8)


def test_failing_solvers_raise_one_error_naming_each_status():
    X, y = _sinus(8)
    program = ConvexProgram(X, y, exact_patterns(X), beta=0.1)
    with pytest.raises(ConvexSolverError, match=r"none of the solvers \['NOPE'\] is installed"):
        _solve(program, solver="NOPE", fallback=[])
    with pytest.raises(ConvexSolverError) as info:
        _solve(program, max_iter=2, fallback=["NOPE"])
    message = str(info.value)
    assert "CLARABEL (status user_limit)" in message and "NOPE (not installed)" in message
    # an inaccurate answer with large residuals is refused, naming them
    with pytest.raises(ConvexSolverError, match=r"SCS \(status optimal_inaccurate, relative gap"):
        _solve(program, solver="SCS", fallback=[], max_iter=5, eps=1e-12)


def test_a_program_without_groups_is_answered_by_the_zero_network():
    X, y = _sinus(5)
    solver, numbers = _solve(ConvexProgram(X, y, np.zeros((5, 0), dtype=bool), beta=1.0))
    assert solver.done and numbers["objective"] == pytest.approx(0.5 * y @ y)
    assert numbers["solver_code"] == -1.0 and numbers["duality_gap"] == 0.0


def test_solver_state_dict_round_trip(solved):
    program, solver, numbers = solved
    fresh = _solver()
    fresh.start(program)
    fresh.load_state_dict(solver.state_dict())
    assert fresh.done and fresh.info == solver.info
    assert fresh.step() == numbers
    np.testing.assert_array_equal(fresh.solution()["V"], solver.solution()["V"])


# -- the algorithm, through the run loop --------------------------------------------------


def _config(runs_dir, n=10, width=40, loss="mse", steps=20, **algorithm):
    name = algorithm.pop("name", "convex")
    stoppers = {"max_steps": {"steps": steps}}
    loggers = {"scalars": {"every": 1}, "snapshots": {"every": 1}}
    savers = {"periodic": {"every_seconds": 0.0, "every_steps": 1}}
    if name == "convex":
        stoppers["solved"] = {}
    else:  # a long run: first and last step only
        loggers = {"scalars": {"every": 0}, "snapshots": {"every": 0}}
        savers = {}
    return {
        "experiment": "convex_test",
        "seed": 0,
        "model": {"width": width, "scaling": "standard", "loss": loss},
        "data": {"name": "sinus", "n": n, "bias": True},
        "init": {"name": "normal"},
        "algorithm": {"name": name, **algorithm},
        "stoppers": stoppers,
        "loggers": loggers,
        "savers": savers,
        "run": {"runs_dir": str(runs_dir), "display": "off"},
    }


def _run(registry, runs_dir, **kwargs):
    return start_run(resolve(_config(runs_dir, **kwargs), registry), "", registry)


def test_run_solves_in_one_step_and_records_the_network(registry, tmp_path):
    run = _run(registry, tmp_path, beta=1e-2)
    assert run.meta["status"] == "finished" and run.meta["reason"] == "solved"
    s = run.scalars
    assert list(s["step"]) == [0, 1]
    assert s["convex_objective"][1] == pytest.approx(s["nonconvex_objective"][1], rel=1e-6)
    assert s["solver_duality_gap"][1] <= 1e-8 * s["solver_objective"][1]
    # the run's objective is the program's times 2c, and beta / (2c) the program's beta
    assert s["convex_objective"][1] == pytest.approx(
        loss_scale(10, "mse") * s["solver_objective"][1], rel=1e-12
    )
    W, a, active = (run.snapshots[k][-1] for k in ("W", "a", "active"))
    assert W.shape == (2, 40) and active.sum() == s["n_neurons"][1]
    assert np.all(W[:, ~active] == 0) and np.all(a[~active] == 0)
    X, Y = run.problem["X"], run.problem["Y"]
    assert s["loss"][1] == pytest.approx(model_loss(X, Y, W, a, "standard", "mse"), rel=1e-12)
    regularised = s["loss"][1] + 0.5e-2 * (np.sum(W * W) + a @ a)
    assert regularised == pytest.approx(s["convex_objective"][1], rel=1e-6)
    assert s["n_groups"][1] == 2 * (2 * 10 - 1)


def test_loss_conventions_map_onto_each_other(registry, tmp_path):
    """mse with weight decay lam is half_sum with weight decay n lam / 2."""
    mse = _run(registry, tmp_path / "a", beta=1e-2, loss="mse")
    half = _run(registry, tmp_path / "b", beta=10 * 1e-2 / 2, loss="half_sum")
    assert program_beta(1e-2, 10, "mse") == pytest.approx(program_beta(5e-2, 10, "half_sum"))
    assert half.scalars["convex_objective"][1] == pytest.approx(
        mse.scalars["convex_objective"][1] * 10 / 2, rel=1e-7
    )
    # one optimal fit (the data term is strictly convex in it), the network may differ
    X = mse.problem["X"]
    fits = [np.maximum(X @ r.snapshots["W"][-1], 0) @ r.snapshots["a"][-1] for r in (mse, half)]
    np.testing.assert_allclose(fits[0], fits[1], atol=1e-6)


def test_gradient_descent_with_weight_decay_stays_above_the_optimum_and_reaches_it(
    registry, tmp_path
):
    lam = 1e-2
    convex = _run(registry, tmp_path / "c", beta=lam)
    optimum = convex.scalars["convex_objective"][-1]
    gd = _run(
        registry,
        tmp_path / "g",
        name="gd_numpy",
        optimizer="momentum",
        lr=0.005,
        weight_decay=lam,
        width=100,
        steps=10_000,
    )
    W, a = gd.snapshots["W"][-1], gd.snapshots["a"][-1]
    X, Y = gd.problem["X"], gd.problem["Y"]
    # gd's objective in the run's convention: MSE + lam/2 |theta|^2
    value = model_loss(X, Y, W, a, "standard", "mse") + lam / 2 * (np.sum(W * W) + a @ a)
    assert value == pytest.approx(
        loss_scale(10, "mse") * nonconvex_objective(X, Y, W, a, program_beta(lam, 10)), rel=1e-12
    )
    assert optimum <= value <= optimum * (1 + 1e-3)


def test_neurons_mode_iterates_to_a_fixed_point_without_raising_the_objective(registry, tmp_path):
    run = _run(registry, tmp_path, beta=1e-3, patterns="neurons", width=12)
    s = run.scalars
    assert run.meta["reason"] == "solved" and s["converged"][-1] == 1.0
    values = s["convex_objective"][1:]
    assert len(values) >= 2
    assert np.all(np.diff(values) <= 1e-8 * values[0])
    np.testing.assert_allclose(s["convex_objective"][1:], s["nonconvex_objective"][1:], rtol=1e-6)
    # the initial network is the state at step 0, and the width stays the initial one
    np.testing.assert_array_equal(run.snapshots["W"][0], run.problem["W0"])
    assert run.snapshots["W"].shape[2] == 12


def test_sampled_patterns_are_a_restriction_of_exact_ones(registry, tmp_path):
    exact = _run(registry, tmp_path / "e", beta=1e-2)
    sampled = _run(registry, tmp_path / "s", beta=1e-2, patterns="sampled", n_patterns=6)
    assert sampled.scalars["n_patterns"][-1] <= 6
    assert sampled.scalars["convex_objective"][-1] >= exact.scalars["convex_objective"][-1] * (
        1 - 1e-8
    )
    again = _run(registry, tmp_path / "t", beta=1e-2, patterns="sampled", n_patterns=6)
    np.testing.assert_array_equal(again.snapshots["W"][-1], sampled.snapshots["W"][-1])


def test_resume_after_the_solve_changes_nothing(registry, tmp_path):
    run = _run(registry, tmp_path, beta=1e-2)
    resumed = resume_run(run.path, registry, overrides=["stoppers.max_steps.steps=50"])
    assert resumed.meta["status"] == "finished" and resumed.meta["reason"] == "solved"
    assert resumed.meta["steps"] == 1
    np.testing.assert_array_equal(resumed.snapshots["W"][-1], run.snapshots["W"][-1])


def test_neurons_mode_resumes_exactly(registry, tmp_path):
    straight = _run(registry, tmp_path / "a", beta=1e-3, patterns="neurons", width=12)
    cut = _run(registry, tmp_path / "b", beta=1e-3, patterns="neurons", width=12, steps=1)
    assert cut.meta["reason"] == "max_steps"
    resumed = resume_run(cut.path, registry, overrides=["stoppers.max_steps.steps=20"])
    assert resumed.meta["steps"] == straight.meta["steps"]
    np.testing.assert_allclose(resumed.snapshots["W"][-1], straight.snapshots["W"][-1], atol=1e-9)
    np.testing.assert_allclose(
        resumed.scalars["convex_objective"], straight.scalars["convex_objective"], rtol=1e-9
    )


def test_setup_refuses_what_it_cannot_solve(registry):
    cls = registry.get("algorithm", "convex")
    algorithm = cls(**validate_params("algorithm", {}, cls.params))
    X, y = _sinus(5)
    base = dict(X=X, Y=y, W0=np.ones((2, 3)), a0=np.ones(3), registry=registry)
    from core.errors import ConfigError

    with pytest.raises(ConfigError, match="scaling='standard'"):
        algorithm.setup(Problem(**base, scaling="ntk"))
    with pytest.raises(ConfigError, match="one output"):
        algorithm.setup(Problem(**{**base, "Y": np.ones((5, 2))}))


def test_the_package_imports_without_cvxpy():
    code = (
        "import sys\n"
        "import plugins.convex\n"
        "assert 'cvxpy' not in sys.modules\n"  # imported lazily, by the solver
        "del sys.modules['plugins.convex']\n"
        "sys.modules['cvxpy'] = None\n"  # now importing it fails
        "import plugins.convex\n"
        "print('ok')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "ok"
