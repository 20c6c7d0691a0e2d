"""Tests of plugins/inits.py: shapes, seeding, the law of each init, the grid layout."""

import math

import numpy as np
import pytest
from conftest import plugin_builder

from core.errors import ConfigError
from core.params import validate_params
from core.registry import Registry
from plugins.inits import draw_second_layer

RANDOM_INITS = ("normal", "uniform", "xavier")


@pytest.fixture(scope="module")
def registry():
    return Registry(builtins=["plugins.data", "plugins.inits"], entry_points=False)


@pytest.fixture
def make(registry):
    """``make(name, **params)`` builds the init plugin from its declared defaults."""
    return plugin_builder(registry, "init")


def draw(init, d, m, k=1, seed=0):
    return init.initialize(d, m, k, np.random.default_rng(seed))


def chi2_tolerance(n_draws, n_sd=5):
    """Relative tolerance on a sample mean of squares of n iid Gaussians.

    ``sum(w^2) / sigma^2 ~ chi2(n)`` has mean n and sd sqrt(2 n), so the empirical
    variance ``mean(w^2)`` is ``sigma^2 (1 +- sqrt(2 / n))``; ``n_sd`` = 5 sd makes a
    failure of a correct implementation a ~1e-6 event.
    """
    return n_sd * math.sqrt(2 / n_draws)


def test_all_inits_are_registered(registry):
    assert set(registry.names("init")) == {"normal", "uniform", "xavier", "grid"}
    assert not registry.failures


def test_every_init_works_with_its_declared_defaults(registry):
    for name in registry.names("init"):
        cls = registry.get("init", name)
        init = cls(**validate_params(f"init ({name})", {}, cls.params))
        d, m = (2, 8) if name == "grid" else (3, 8)  # the grid is for 1-D inputs + bias
        W0, a0 = draw(init, d, m)
        assert W0.shape == (d, m) and a0.shape == (m,)
        assert W0.dtype == np.float64 and a0.dtype == np.float64
        assert cls.describe(), name


@pytest.mark.parametrize("name", RANDOM_INITS)
@pytest.mark.parametrize("k", [1, 3])
def test_random_init_shapes(make, name, k):
    W0, a0 = draw(make(name), d=4, m=6, k=k)
    assert W0.shape == (4, 6)
    assert a0.shape == ((6,) if k == 1 else (6, k))


@pytest.mark.parametrize("name", RANDOM_INITS)
@pytest.mark.parametrize("second_layer", ["signed", "rademacher", "normal", "uniform"])
def test_same_seed_same_network_other_seed_other_network(make, name, second_layer):
    init = make(name, second_layer=second_layer)
    W0, a0 = draw(init, 5, 40, seed=1)
    W1, a1 = draw(init, 5, 40, seed=1)
    W2, a2 = draw(init, 5, 40, seed=2)
    assert np.array_equal(W0, W1) and np.array_equal(a0, a1)
    assert not np.array_equal(W0, W2) and not np.array_equal(a0, a2)


# -- first layers --------------------------------------------------------------------


def test_normal_first_layer_variance(make):
    W0, _ = draw(make("normal", scale=0.3), d=50, m=2000)
    assert abs(np.mean(W0**2) / 0.09 - 1) < chi2_tolerance(W0.size)
    assert abs(W0.mean()) < 5 * 0.3 / math.sqrt(W0.size)


def test_uniform_first_layer_bound_and_variance(make):
    W0, _ = draw(make("uniform", scale=2.0), d=50, m=2000)
    assert W0.min() >= -2 and W0.max() < 2
    # w = 2u, u ~ U[-1, 1]: E[w^2] = 4/3, Var(w^2) = 16 (1/5 - 1/9) = 64/45.
    sd = math.sqrt(64 / 45 / W0.size) / (4 / 3)
    assert abs(np.mean(W0**2) / (4 / 3) - 1) < 5 * sd


@pytest.mark.parametrize(
    "mode, d, m, gain, variance",
    [
        ("fan_avg", 40, 2500, 1.0, 2 / 2540),
        ("fan_avg", 40, 2500, 2.0, 8 / 2540),
        ("fan_in", 40, 2500, 1.5, 2.25 / 40),
    ],
)
def test_xavier_empirical_variance_matches_the_formula(make, mode, d, m, gain, variance):
    init = make("xavier", mode=mode, gain=gain)
    assert math.isclose(init.variance(d, m), variance, rel_tol=1e-15)
    W0, _ = draw(init, d, m)
    assert abs(np.mean(W0**2) / variance - 1) < chi2_tolerance(W0.size)


def test_xavier_fan_in_on_k_inputs_is_the_safran_shamir_init(make):
    k = 10
    init = make("xavier", mode="fan_in", second_layer="positive")
    samples = [draw(init, k, k, seed=s) for s in range(1000)]
    W = np.stack([W0 for W0, _ in samples])
    assert abs(np.mean(W**2) * k - 1) < chi2_tolerance(W.size)  # N(0, 1/k)
    assert all(np.array_equal(a0, np.ones(k)) for _, a0 in samples)


# -- shared second layer -------------------------------------------------------------


@pytest.mark.parametrize("m, k", [(1, 1), (7, 1), (8, 1), (5, 3)])
def test_signed_second_layer_is_exactly_balanced(m, k):
    for seed in range(5):
        a0 = draw_second_layer(m, k, np.random.default_rng(seed), "signed")
        assert np.count_nonzero(a0 < 0) == (m * k) // 2
        assert np.array_equal(np.abs(a0), np.ones_like(a0))


def test_signed_second_layer_puts_negatives_at_random_positions():
    patterns = {
        tuple(draw_second_layer(10, 1, np.random.default_rng(seed), "signed") < 0)
        for seed in range(20)
    }
    assert len(patterns) > 10  # 252 balanced patterns of 10 signs


def test_tmlr_one_layer_init(make):
    """Polaczyk & Cyranka: W ~ N(0, 1), a = +-1/sqrt(m), exactly floor(m/2) negative."""
    init = make("normal", second_layer="signed", a_scale_mode="inv_sqrt_m")
    _, a0 = draw(init, 20, 752)
    assert np.allclose(np.abs(a0), 1 / math.sqrt(752), rtol=1e-15, atol=0)
    assert np.count_nonzero(a0 < 0) == 376


@pytest.mark.parametrize(
    "mode, factor", [("constant", 1.0), ("inv_sqrt_m", 1 / 10.0), ("inv_m", 1 / 100.0)]
)
def test_a_scale_modes(mode, factor):
    a0 = draw_second_layer(100, 1, np.random.default_rng(0), "positive", 3.0, mode)
    assert np.allclose(a0, 3.0 * factor, rtol=1e-15, atol=0)


def test_rademacher_second_layer_has_independent_signs():
    a0 = draw_second_layer(10_000, 1, np.random.default_rng(0), "rademacher", 2.0)
    assert np.array_equal(np.abs(a0), np.full(10_000, 2.0))
    assert abs(np.count_nonzero(a0 < 0) - 5000) < 5 * 50  # Binomial(10 000, 1/2), sd 50


def test_normal_second_layer_variance():
    a0 = draw_second_layer(200, 50, np.random.default_rng(0), "normal", 4.0, "inv_sqrt_m")
    sd = 4.0 / math.sqrt(200)
    assert a0.shape == (200, 50)
    assert abs(np.mean(a0**2) / sd**2 - 1) < chi2_tolerance(a0.size)


def test_uniform_inv_sqrt_m_second_layer_is_torch_default_linear_init():
    torch = pytest.importorskip("torch")
    m = 400
    a0 = draw_second_layer(m, 1, np.random.default_rng(0), "uniform", 1.0, "inv_sqrt_m")
    with torch.random.fork_rng():
        torch.manual_seed(0)
        weight = torch.nn.Linear(m, 1, bias=False).weight.detach().numpy().ravel()
    bound = 1 / math.sqrt(m)
    for sample in (a0, weight):  # U[-bound, bound]: P(max |.| < 0.98 bound) = 0.98^400 ~ 3e-4
        assert np.abs(sample).max() <= bound and np.abs(sample).max() > 0.98 * bound
    # Same law: the variances agree (bound^2 / 3) within the sampling spread.
    assert abs(np.var(a0) / np.var(weight) - 1) < 0.3


def test_zero_a_scale_gives_a_zero_second_layer(make):
    _, a0 = draw(make("normal", a_scale=0.0), 3, 5)
    assert not a0.any()


# -- the grid ------------------------------------------------------------------------


def test_grid_positions_are_the_cartesian_product_in_row_major_order(make):
    init = make("grid", per_axis=4, extent=2.0, signs="positive")
    W0, a0 = draw(init, 2, 16)
    grid = np.linspace(-2, 2, 4)
    expected = np.array([[grid[i], grid[j]] for i in range(4) for j in range(4)]).T
    assert np.array_equal(W0, expected)
    assert np.array_equal(a0, np.ones(16))
    assert len({tuple(c) for c in W0.T}) == 16


def test_grid_both_signs_layout(make):
    W0, a0 = draw(make("grid", extent=0.5, mass=0.25), d=2, m=18)  # per_axis 3 from m
    n_positions = 9
    assert W0.shape == (2, 18)
    assert np.array_equal(W0[:, :n_positions], W0[:, n_positions:])
    assert np.array_equal(a0, np.r_[np.full(9, 0.25), np.full(9, -0.25)])
    assert np.array_equal(np.unique(W0[0]), np.linspace(-0.5, 0.5, 3))


def test_grid_random_signs_are_seeded_coin_flips(make):
    init = make("grid", per_axis=30, signs="random")
    W0, a0 = draw(init, 2, 0, seed=1)
    _, again = draw(init, 2, 0, seed=1)
    _, other = draw(init, 2, 0, seed=2)
    assert W0.shape == (2, 900) and np.array_equal(a0, again)
    assert not np.array_equal(a0, other)
    assert np.array_equal(np.abs(a0), np.ones(900))
    assert abs(np.count_nonzero(a0 < 0) - 450) < 5 * 15  # Binomial(900, 1/2), sd 15


def test_grid_explicit_per_axis_fixes_the_width(make):
    W0, a0 = draw(make("grid", per_axis=5), 2, 1000)
    assert W0.shape == (2, 50) and a0.shape == (50,)


def test_grid_needs_an_input_and_the_bias(make):
    with pytest.raises(ConfigError, match=r"init \(grid\) needs d >= 2.*got d=1"):
        draw(make("grid"), 1, 8)


def test_grid_in_three_dimensions_is_the_cartesian_product(make):
    """2-D inputs with a bias: positions on a 3-D grid, ravel_multi_index order, m = 2 p^3."""
    W0, a0 = draw(make("grid", extent=1.5), 3, 2 * 4**3)
    grid = np.linspace(-1.5, 1.5, 4)
    expected = np.array(
        [[grid[i], grid[j], grid[k]] for i in range(4) for j in range(4) for k in range(4)]
    ).T
    assert W0.shape == (3, 128)
    assert np.array_equal(W0[:, :64], expected) and np.array_equal(W0[:, 64:], expected)
    assert np.array_equal(a0, np.r_[np.ones(64), -np.ones(64)])
    with pytest.raises(ConfigError, match=r"width m=100 is not 2 \* per_axis\*\*3"):
        draw(make("grid"), 3, 100)


@pytest.mark.parametrize("signs, m", [("both", 9), ("both", 2), ("positive", 10), ("random", 1)])
def test_grid_width_must_fit_a_square_grid(make, signs, m):
    with pytest.raises(ConfigError, match=f"width m={m} is not .*per_axis"):
        draw(make("grid", signs=signs), 2, m)


def test_grid_has_one_output(make):
    with pytest.raises(ConfigError, match="k == 1"):
        draw(make("grid"), 2, 8, k=2)
