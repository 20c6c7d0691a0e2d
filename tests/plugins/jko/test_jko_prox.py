r"""The KL prox solvers: closed form for a linear energy, agreement, first-order optimality.

Every solver minimises :math:`\sigma F(p) + \mathrm{KL}(p \mid q)`; its minimiser
satisfies :math:`\sigma \nabla F(p) + \log(p / q) = 0`. Stated tolerances (largest
relative difference to the Newton-on-the-dual reference, largest first-order residual):

=======================  ============  ==========
solver                   vs reference  residual
=======================  ============  ==========
scipy, dual (Newton)     reference     1e-10
scipy, primal (L-BFGS-B) 1e-6          1e-6
cvxpy (Clarabel)         1e-6          1e-6
torch, dual (Newton)     1e-10         1e-10
torch (mirror descent)   1e-8          1e-8
=======================  ============  ==========
"""

import numpy as np
import pytest

from core.errors import ConfigError, RelulabError
from plugins.jko import ProxSolverError, QuadraticEnergy, build_prox, kkt_residual
from plugins.jko._prox import prox_objective

SOLVERS = {
    "scipy-dual": ("scipy", {}, None, 1e-10),
    "scipy-primal": ("scipy", {"formulation": "primal"}, 1e-6, 1e-6),
    "cvxpy": ("cvxpy", {}, 1e-6, 1e-6),
    "torch-newton": ("torch", {}, 1e-10, 1e-10),
    "torch-closed-form": ("torch", {"method": "mirror", "max_iter": 20000}, 1e-8, 1e-8),
    "torch-autograd": (
        "torch",
        {"method": "mirror", "max_iter": 20000, "gradient": "autograd"},
        1e-8,
        1e-8,
    ),
}


def _prox(key):
    name, options, _, _ = SOLVERS[key]
    if name in ("cvxpy", "torch"):
        pytest.importorskip(name)
    return build_prox(name, options)


def _quadratic(n=5, N=30, seed=0):
    rng = np.random.default_rng(seed)
    energy = QuadraticEnergy(rng.normal(size=(n, N)), rng.normal(size=n), 0.5, 0.1 * rng.random(N))
    q = rng.uniform(0.5, 2.0, N)
    return energy, np.log(q)


@pytest.mark.parametrize("key", list(SOLVERS))
@pytest.mark.parametrize("kind", ["zero features", "zero c"])
def test_linear_energy_gives_gibbs_reweighting(key, kind):
    """F(p) = beta . p: the prox is q * exp(-sigma beta), exactly."""
    rng = np.random.default_rng(1)
    N, sigma = 20, 2.5
    beta = rng.normal(size=N)
    A = np.zeros((4, N)) if kind == "zero features" else rng.normal(size=(4, N))
    energy = QuadraticEnergy(A, rng.normal(size=4), 0.0 if kind == "zero c" else 0.7, beta)
    log_q = np.log(rng.uniform(0.2, 3.0, N))
    result = _prox(key).solve(energy, log_q, sigma)
    expected = np.exp(log_q - sigma * beta)
    tol = max(SOLVERS[key][2] or 1e-12, 1e-9)
    assert np.allclose(result.p, expected, rtol=tol, atol=0)
    assert np.allclose(result.log_p, np.log(expected), rtol=0, atol=tol)


@pytest.mark.parametrize("key", [k for k in SOLVERS if k != "scipy-dual"])
@pytest.mark.parametrize("sigma", [1.0, 10.0])
def test_solvers_agree(key, sigma):
    energy, log_q = _quadratic()
    reference = _prox("scipy-dual").solve(energy, log_q, sigma)
    result = _prox(key).solve(energy, log_q, sigma)
    tol = SOLVERS[key][2]
    assert np.max(np.abs(result.p - reference.p)) <= tol * np.max(reference.p)
    obj = prox_objective(energy, log_q, sigma, result.p)
    assert obj >= prox_objective(energy, log_q, sigma, reference.p) - 1e-9 * abs(obj)


@pytest.mark.parametrize("key", list(SOLVERS))
@pytest.mark.parametrize("sigma", [0.3, 10.0])
def test_first_order_optimality(key, sigma):
    """sigma grad F(p) + log(p / q) = 0 on every coordinate (all masses are non-negligible)."""
    energy, log_q = _quadratic(seed=2)
    result = _prox(key).solve(energy, log_q, sigma)
    assert np.all(result.p > 0)
    residual = sigma * energy.gradient(result.p) + np.log(result.p) - log_q
    assert np.max(np.abs(residual)) <= SOLVERS[key][3]
    assert result.kkt == pytest.approx(np.max(np.abs(residual)), rel=1e-3, abs=1e-12)
    assert result.converged


def test_dual_newton_is_exact_on_tiny_masses():
    """q spanning 600 orders of magnitude: the Gibbs form keeps every coordinate optimal."""
    energy, _ = _quadratic(seed=3)
    log_q = np.linspace(-1400.0, 0.0, energy.n_positions)
    result = _prox("scipy-dual").solve(energy, log_q, 5.0)
    assert np.all(np.isfinite(result.log_p))
    assert kkt_residual(energy, log_q, 5.0, result.p, result.log_p, rel_mass=0.0) < 1e-10


@pytest.mark.parametrize("key", ["scipy-dual", "scipy-primal", "torch-newton", "torch-closed-form"])
def test_zero_mass_stays_zero(key):
    energy, log_q = _quadratic(seed=4)
    log_q[[3, 7]] = -np.inf
    result = _prox(key).solve(energy, log_q, 2.0)
    assert np.all(result.p[[3, 7]] == 0) and np.all(np.isneginf(result.log_p[[3, 7]]))
    keep = np.isfinite(log_q)
    sub = _prox(key).solve(energy.restrict(keep), log_q[keep], 2.0)
    assert np.allclose(result.p[keep], sub.p, rtol=1e-12)


def test_cvxpy_failure_names_solver_and_status():
    pytest.importorskip("cvxpy")
    energy, log_q = _quadratic()
    prox = build_prox("cvxpy", {"max_iter": 1, "fallback": [], "accept_inaccurate": False})
    with pytest.raises(ProxSolverError, match=r"CLARABEL \(status") as info:
        prox.solve(energy, log_q, 1.0)
    assert isinstance(info.value, RelulabError)


def test_cvxpy_falls_back_and_records_the_solver():
    pytest.importorskip("cvxpy")
    energy, log_q = _quadratic()
    prox = build_prox("cvxpy", {"solver": "NOT_A_SOLVER", "fallback": ["CLARABEL"]})
    result = prox.solve(energy, log_q, 1.0)
    assert result.info["solver"] == "CLARABEL"
    none = build_prox("cvxpy", {"solver": "NOT_A_SOLVER", "fallback": []})
    with pytest.raises(ProxSolverError, match="none of the solvers"):
        none.solve(energy, log_q, 1.0)


def test_prox_options_are_validated():
    with pytest.raises(ConfigError, match="formulation"):
        build_prox("scipy", {"formulation": "both"})
    with pytest.raises(ConfigError, match="unknown key 'solverr'"):
        build_prox("scipy", {"solverr": 1})


def test_torch_cuda_without_a_device_is_a_config_error():
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    energy, log_q = _quadratic()
    with pytest.raises(ConfigError, match="cuda"):
        build_prox("torch", {"device": "cuda"}).solve(energy, log_q, 1.0)


def test_torch_newton_agrees_with_scipy_on_the_flagship_step():
    """Ten scaling iterations of the flagship's first step (30 x 30, sigma = 30).

    The torch prox runs the scipy prox's dual Newton in float64: the two steps'
    masses agree to 1e-8 of the largest mass (mirror descent: 3e-6).
    """
    pytest.importorskip("torch")
    from jko_cases import grid_problem, make_jko

    problem = grid_problem(per_axis=30, extent=2.0, n=15)
    steps = {}
    for name in ("scipy", "torch"):
        algo = make_jko(
            problem,
            tau=0.3,
            gamma=0.01,
            proxf=name,
            solver="sinkhorn",
            max_inner=10,
            inner_tol=0.0,
            masses="prox",
        )
        algo.step()
        steps[name] = algo.p
    assert np.max(np.abs(steps["torch"] - steps["scipy"])) <= 1e-8 * np.max(steps["scipy"])
