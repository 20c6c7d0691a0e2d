r"""The entropic JKO step and flow: limits, monotonicity, stability, exactness, resume.

The exact step is the minimiser of :math:`\tau F(\pi\mathbf 1) + \gamma\,\mathrm{KL}(\pi\mid K)`
over couplings with :math:`\pi^\top \mathbf 1 = q`; with :math:`\tau \to 0` it is the
entropic blur :math:`K\,\mathrm{diag}(q / K^\top \mathbf 1)\,\mathbf 1` of ``q``, which is
``q`` itself up to :math:`e^{-h^2/\gamma}` when :math:`\gamma \ll h^2` (``h`` the spacing).
"""

import numpy as np
import pytest
from jko_cases import grid_problem, make_jko, spacing

from core.store import load_state, save_state
from plugins.jko import entropic_jko_step

SOLVERS = ["newton", "sinkhorn"]


@pytest.mark.parametrize("solver", SOLVERS)
def test_tau_to_zero_leaves_masses_unchanged_for_small_gamma(solver):
    """gamma = 0.02 h^2 (neighbour weight exp(-50)), converged inner iterations."""
    problem = grid_problem(per_axis=6, jitter=1.0)
    h = spacing(6, 1.0)
    for tau in (1e-6, 1e-10):
        algo = make_jko(
            problem, tau=tau, gamma=0.02 * h**2, inner_tol=1e-14, max_inner=100, solver=solver
        )
        p0 = algo.p.copy()
        algo.step()
        assert np.allclose(algo.p, p0, rtol=1e-12, atol=0)


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("masses", ["prox", "coupling"])
def test_tau_to_zero_is_the_entropic_blur(masses, solver):
    problem = grid_problem(per_axis=6, signs="positive", jitter=1.0)
    h = spacing(6, 1.0)
    algo = make_jko(
        problem,
        tau=1e-13,
        gamma=h**2,
        masses=masses,
        inner_tol=1e-13,
        max_inner=50,
        solver=solver,
    )
    q = algo.p.copy()
    algo.step()
    K = algo.kernel_
    blur = K.apply(q / K.apply(np.ones_like(q)))
    assert np.allclose(algo.p, blur, rtol=1e-9, atol=0)
    assert not np.allclose(blur, q, rtol=1e-3)


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"solver": "sinkhorn", "max_inner": 10, "warm_start": False, "masses": "prox"},
        {"solver": "sinkhorn", "max_inner": 300, "inner_tol": 1e-10},
    ],
)
def test_energy_decreases_along_the_flow(options):
    problem = grid_problem(per_axis=10, extent=2.0, n=10, mass=0.5)
    h = spacing(10, 2.0)
    algo = make_jko(problem, tau=0.1, gamma=0.25 * h**2, **options)
    energies = [algo.scalars()["energy"]]
    for _ in range(6):
        algo.step()
        energies.append(algo.scalars()["energy"])
    assert np.all(np.diff(energies) < 0), energies
    assert energies[-1] < 0.8 * energies[0]


@pytest.mark.parametrize("masses", ["prox", "coupling"])
def test_log_domain_and_plain_agree_where_both_are_stable(masses):
    problem = grid_problem(per_axis=8, extent=1.5, jitter=1.0, mass=0.3)
    h = spacing(8, 1.5)
    runs = {}
    for log_domain in (True, False):
        algo = make_jko(
            problem,
            tau=0.2,
            gamma=0.5 * h**2,
            log_domain=log_domain,
            masses=masses,
            solver="sinkhorn",
            max_inner=10,
        )
        for _ in range(3):
            algo.step()
        runs[log_domain] = algo
    assert np.allclose(runs[True].p, runs[False].p, rtol=1e-10, atol=0)
    assert np.allclose(
        runs[True].records()["violation"], runs[False].records()["violation"], rtol=1e-6, atol=1e-14
    )


@pytest.mark.parametrize("solver", SOLVERS)
def test_separable_and_dense_flows_agree(solver):
    problem = grid_problem(per_axis=7, signs="random", jitter=1.0)
    h = spacing(7, 1.0)
    flows = []
    for kernel in ("separable", "dense"):
        algo = make_jko(problem, tau=0.1, gamma=h**2, kernel=kernel, solver=solver)
        assert set(algo.kernel_.kinds) == {kernel}
        for _ in range(2):
            algo.step()
        flows.append(algo.p)
    assert np.allclose(flows[0], flows[1], rtol=1e-10, atol=0)


@pytest.mark.parametrize("solver", SOLVERS)
def test_small_gamma_stays_finite_and_conserves_mass_per_sign(solver):
    """gamma = 1e-3 h^2 and masses spanning 260 orders of magnitude."""
    problem = grid_problem(per_axis=8, extent=1.0, n=8)
    h = spacing(8, 1.0)
    rng = np.random.default_rng(0)
    problem.a0 = np.sign(problem.a0) * np.exp(rng.uniform(-600.0, 0.0, problem.a0.size))
    algo = make_jko(problem, tau=0.1, gamma=1e-3 * h**2, masses="coupling", solver=solver)
    before = algo.scalars()
    for _ in range(3):
        algo.step()
    after = algo.scalars()
    assert np.all(np.isfinite(algo.log_p))
    assert all(np.isfinite(v) for v in after.values())
    assert after["mass_pos"] == pytest.approx(before["mass_pos"], rel=1e-12)
    assert after["mass_neg"] == pytest.approx(before["mass_neg"], rel=1e-12)


def test_log_domain_keeps_mass_the_plain_product_loses():
    """All mass in one corner, gamma = 0.02 h^2: far kernel entries underflow."""
    problem = grid_problem(per_axis=8, extent=1.0, signs="positive")
    h = spacing(8, 1.0)
    problem.a0 = np.where(np.arange(problem.a0.size) == 0, 1.0, 0.0)
    logs = {}
    for log_domain in (True, False):
        algo = make_jko(
            problem,
            tau=0.05,
            gamma=0.02 * h**2,
            log_domain=log_domain,
            masses="coupling",
            solver="sinkhorn",
        )
        algo.step()
        logs[log_domain] = algo.log_p
    assert np.all(np.isfinite(logs[True]))  # every position receives a (tiny) mass
    assert np.any(np.isneginf(logs[False]))  # the plain product rounds it to zero
    both = np.isfinite(logs[False]) & (logs[False] > -600)
    assert np.allclose(logs[True][both], logs[False][both], rtol=0, atol=1e-8)


def _exact_step_cvxpy(algo, q):
    """The exact entropic JKO step by cvxpy (exponential cone) over couplings, /gamma."""
    cp = pytest.importorskip("cvxpy")
    E, W = algo.energy, algo.measure.W
    log_K = -np.sum((W[:, :, None] - W[:, None, :]) ** 2, axis=0) / algo.gamma
    N = q.size
    pi = cp.Variable((N, N), nonneg=True)
    p = cp.sum(pi, axis=1)
    # sigma F(pi 1) + KL(pi | K) up to a constant, sigma = tau / gamma
    objective = (
        algo.sigma * (E.c * cp.sum_squares(E.A @ p - E.y) + E.beta @ p)
        - cp.sum(cp.entr(pi))
        - cp.sum(cp.multiply(log_K, pi))
        - cp.sum(pi)
    )
    problem = cp.Problem(cp.Minimize(objective), [cp.sum(pi, axis=0) == q])
    problem.solve(solver="CLARABEL", tol_gap_abs=1e-10, tol_gap_rel=1e-10, tol_feas=1e-10)
    assert problem.status in ("optimal", "optimal_inaccurate")
    return pi.value.sum(axis=1)


@pytest.mark.filterwarnings("ignore:Solution may be inaccurate")
@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("sigma", [1.0, 5.0])
def test_one_step_equals_the_exact_entropic_jko_program(sigma, solver):
    problem = grid_problem(per_axis=6, signs="positive", mass=0.1, jitter=1.0)
    gamma = 0.5 * spacing(6, 1.0) ** 2
    algo = make_jko(
        problem,
        tau=sigma * gamma,
        gamma=gamma,
        max_inner=5000,
        inner_tol=1e-12,
        prox_options={"tol": 1e-12},
        weight_decay=0.05,
        solver=solver,
    )
    q = algo.p.copy()
    algo.step()
    assert algo.scalars()["violation"] < 1e-11
    exact = _exact_step_cvxpy(algo, q)
    assert np.max(np.abs(algo.p - exact)) <= 1e-6 * np.max(exact)
    assert np.max(np.abs(algo.p - q)) > 1e-2 * np.max(q)  # the step moved mass


@pytest.mark.parametrize("solver", SOLVERS)
def test_resume_mid_flow_equals_uninterrupted_flow(tmp_path, solver):
    """Warm starts (lambda, log b) are part of the state: a resumed flow is bit-equal."""
    problem = grid_problem(per_axis=8, extent=1.5, jitter=1.0)
    params = {"tau": 0.2, "gamma": 0.3 * spacing(8, 1.5) ** 2, "solver": solver}
    straight = make_jko(problem, **params)
    for _ in range(6):
        straight.step()
    first = make_jko(problem, **params)
    for _ in range(3):
        first.step()
    save_state(tmp_path / "state.npz", first.state_dict())
    second = make_jko(problem, **params)
    second.load_state_dict(load_state(tmp_path / "state.npz"))
    assert second.n_steps == 3 and second.loss() == first.loss()
    for _ in range(3):
        second.step()
    assert np.array_equal(second.log_p, straight.log_p)
    assert second.scalars() == straight.scalars()
    for key, value in straight.records().items():
        assert np.array_equal(second.records()[key], value)


def test_state_scalars_and_records_layout():
    problem = grid_problem(per_axis=5)
    algo = make_jko(
        problem,
        tau=0.1,
        gamma=0.1,
        weight_decay=0.01,
        max_inner=4,
        inner_tol=0.0,
        solver="sinkhorn",
    )
    assert algo.records() is None
    algo.step()
    state = algo.state()
    assert state["W"].shape == (2, 50) and state["a"].shape == (50,)
    assert np.allclose(state["a"], algo.measure.s * state["p"])
    scalars = algo.scalars()
    assert {
        "mass",
        "mass_pos",
        "mass_neg",
        "inner_iters",
        "violation",
        "energy",
        "weight_decay_term",
    } <= set(scalars)
    assert scalars["inner_iters"] == 4
    assert scalars["energy"] == pytest.approx(algo.loss() + scalars["weight_decay_term"])
    rows = algo.records()
    assert {"violation", "F"} <= set(rows) and {len(v) for v in rows.values()} == {4}


def test_step_function_log_dict():
    problem = grid_problem(per_axis=5)
    algo = make_jko(problem, tau=0.1, gamma=0.1)
    p, log_p, info = entropic_jko_step(
        algo.log_p,
        algo.kernel_,
        algo.prox_,
        algo.energy,
        algo.sigma,
        tol=1e-8,
        max_inner=200,
        log=True,
    )
    assert np.allclose(p, np.exp(log_p))
    assert info["violation"] < 1e-8 and info["n_inner"] == len(info["records"]["F"])
    # at convergence the coupling diag(a) K diag(b) has marginals p and q
    K = algo.kernel_
    a, b = np.exp(info["log_a"]), np.exp(info["log_b"])
    assert np.allclose(a * K.apply(b), p, rtol=1e-7)
    assert np.allclose(b * K.apply(a), algo.p, rtol=1e-7)


@pytest.mark.filterwarnings("ignore:Solution may be inaccurate")
@pytest.mark.parametrize("proxf, tol", [("cvxpy", 1e-5), ("torch", 1e-7)])
def test_steps_with_each_prox_plugin_agree(proxf, tol):
    pytest.importorskip(proxf)
    problem = grid_problem(per_axis=5, extent=1.5, jitter=1.0, mass=0.2)
    gamma = 0.5 * spacing(5, 1.5) ** 2
    runs = {}
    for name in ("scipy", proxf):
        algo = make_jko(
            problem,
            tau=gamma,
            gamma=gamma,
            proxf=name,
            max_inner=3,
            prox_options={"max_iter": 5000},
            solver="sinkhorn",
            masses="prox",
        )
        algo.step()
        runs[name] = algo.p
    assert np.max(np.abs(runs[proxf] - runs["scipy"])) <= tol * np.max(runs["scipy"])


@pytest.mark.parametrize("solver", SOLVERS)
def test_coupled_signs_exchange_mass_and_conserve_the_total(solver):
    problem = grid_problem(per_axis=6, extent=1.5, signs="random", jitter=1.0)
    gamma = spacing(6, 1.5) ** 2
    algo = make_jko(
        problem, tau=0.3, gamma=gamma, couple_signs=True, masses="coupling", solver=solver
    )
    assert len(algo.kernel_.blocks) == 1
    before = algo.scalars()
    for _ in range(3):
        algo.step()
    after = algo.scalars()
    assert after["mass"] == pytest.approx(before["mass"], rel=1e-12)
    assert abs(after["mass_pos"] - before["mass_pos"]) > 1e-6 * before["mass"]


@pytest.mark.parametrize("solver", SOLVERS)
def test_jko_on_a_three_dimensional_grid(solver):
    """2-D inputs with a bias: positions on a 5 x 5 x 5 grid, separable = dense, F decreases."""
    from core.components import Problem

    rng = np.random.default_rng(0)
    X = np.c_[rng.uniform(-1, 1, (12, 2)), np.ones(12)]
    y = np.sin(3 * X[:, 0]) * np.cos(2 * X[:, 1])
    t = np.linspace(-1.0, 1.0, 5)
    G = np.stack([g.ravel() for g in np.meshgrid(t, t, t, indexing="ij")])
    P = G.shape[1]
    problem = Problem(
        X=X, Y=y, W0=np.hstack([G, G]), a0=0.2 * np.r_[np.ones(P), -np.ones(P)], bias=True
    )
    h = t[1] - t[0]
    flows = {}
    for kernel in ("separable", "dense"):
        algo = make_jko(problem, tau=0.05, gamma=0.5 * h**2, kernel=kernel, solver=solver)
        assert set(algo.kernel_.kinds) == {kernel}
        energies = [algo.scalars()["energy"]]
        for _ in range(3):
            algo.step()
            energies.append(algo.scalars()["energy"])
        assert np.all(np.diff(energies) < 0), energies
        flows[kernel] = algo
    assert np.allclose(flows["separable"].p, flows["dense"].p, rtol=1e-9, atol=0)
    after = flows["separable"].scalars()
    assert after["mass_pos"] == pytest.approx(0.2 * P, rel=1e-12)


def test_over_relaxed_scalings_reach_the_same_step_in_fewer_iterations():
    problem = grid_problem(per_axis=10, extent=2.0, n=10, mass=0.5)
    gamma = 0.5 * spacing(10, 2.0) ** 2
    exact = make_jko(problem, tau=0.3, gamma=gamma, inner_tol=0.0, max_inner=30)
    exact.step()
    iterations = {}
    for omega in (1.0, 1.8):
        algo = make_jko(
            problem,
            tau=0.3,
            gamma=gamma,
            solver="sinkhorn",
            relaxation=omega,
            inner_tol=1e-11,
            max_inner=20000,
        )
        algo.step()
        assert algo.scalars()["violation"] < 1e-11
        assert np.sum(np.abs(algo.p - exact.p)) <= 1e-9 * np.sum(exact.p)
        iterations[omega] = algo.scalars()["inner_iters"]
    assert iterations[1.8] < 0.5 * iterations[1.0], iterations
