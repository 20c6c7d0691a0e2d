"""Gibbs kernels: separable (axis by axis) equals dense, log domain equals plain."""

import numpy as np
import pytest
from jko_cases import grid_positions

from core.errors import ConfigError
from plugins.jko import DenseKernel, SeparableKernel, detect_grid, make_kernel
from plugins.jko._kernel import log_matmul, logsumexp

H = 2.0 / 6  # spacing of the 7 x 7 grid of [-1, 1]^2


def _layouts():
    """Positions and groups: both signs (blocks), random signs (holes), coupled copies."""
    G = grid_positions(7, 1.0)
    P = G.shape[1]
    rng = np.random.default_rng(0)
    signs = rng.choice([-1.0, 1.0], size=P)
    both = np.hstack([G, G])
    return {
        "both signs, separate": (both, [np.arange(P), np.arange(P, 2 * P)]),
        "random signs, separate": (G, [np.flatnonzero(signs > 0), np.flatnonzero(signs < 0)]),
        "both signs, coupled": (both, None),
        "shuffled": (G[:, rng.permutation(P)], None),
    }


@pytest.mark.parametrize("layout", list(_layouts()))
@pytest.mark.parametrize("gamma", [0.5 * H**2, 4 * H**2])
def test_separable_equals_dense(layout, gamma):
    points, groups = _layouts()[layout]
    sep = make_kernel(points, gamma, groups, kind="separable")
    dense = make_kernel(points, gamma, groups, kind="dense")
    assert set(sep.kinds) == {"separable"} and set(dense.kinds) == {"dense"}
    rng = np.random.default_rng(1)
    v = rng.random(points.shape[1]) * np.exp(rng.normal(scale=3, size=points.shape[1]))
    Kv = dense.apply(v)
    assert np.allclose(sep.apply(v), Kv, rtol=1e-12, atol=0)
    u = np.log(v)
    assert np.allclose(sep.log_apply(u), np.log(Kv), rtol=0, atol=1e-12)
    assert np.allclose(dense.log_apply(u), np.log(Kv), rtol=0, atol=1e-12)


def test_dense_kernel_matrix_entries():
    points = np.random.default_rng(2).normal(size=(3, 12))
    K = DenseKernel(points, 0.7).matrix
    C = np.sum((points[:, :, None] - points[:, None, :]) ** 2, axis=0)
    assert np.allclose(K, np.exp(-C / 0.7), rtol=1e-12, atol=1e-300)
    assert np.allclose(K, K.T)


def test_blocks_do_not_exchange_mass():
    points, groups = _layouts()["both signs, separate"]
    K = make_kernel(points, H**2, groups)
    v = np.zeros(points.shape[1])
    v[groups[0]] = 1.0
    assert np.all(K.apply(v)[groups[1]] == 0.0)
    u = np.where(v > 0, 0.0, -np.inf)
    assert np.all(np.isneginf(K.log_apply(u)[groups[1]]))


def test_log_domain_survives_tiny_gamma():
    """gamma = 1e-3 h^2: far entries of K are exp(-1000 k^2), zero in floating point."""
    points = grid_positions(9, 1.0)
    h = 2.0 / 8
    K = make_kernel(points, 1e-3 * h**2)
    u = np.full(points.shape[1], -np.inf)
    u[0] = 0.0  # all mass in one corner
    out = K.log_apply(u)
    assert np.all(np.isfinite(out))
    d2 = np.sum((points - points[:, :1]) ** 2, axis=0)
    assert np.allclose(out, -d2 / (1e-3 * h**2), rtol=1e-12)
    with np.errstate(divide="ignore"):
        plain = np.log(K.apply(np.exp(u)))
    assert np.sum(np.isneginf(plain)) > 0  # the plain product underflows


def test_auto_picks_separable_on_grid_and_dense_elsewhere():
    G = grid_positions(6, 1.0)
    assert make_kernel(G, 0.1).kinds == ["separable"]
    cloud = np.random.default_rng(3).normal(size=(2, 30))
    assert make_kernel(cloud, 0.1).kinds == ["dense"]
    with pytest.raises(ConfigError, match="regular grid"):
        make_kernel(cloud, 0.1, kind="separable")
    with pytest.raises(ConfigError, match="kernel must be one of"):
        make_kernel(G, 0.1, kind="fft")


def test_detect_grid():
    G = grid_positions(5, 2.0)
    grid = detect_grid(G)
    assert grid.shape == (5, 5) and grid.bijective
    assert np.array_equal(grid.index, np.arange(25))
    holes = detect_grid(G[:, ::2])
    assert holes.shape == (5, 5) and holes.injective and not holes.bijective
    twice = detect_grid(np.hstack([G, G]))
    assert not twice.injective
    line = detect_grid(np.vstack([np.linspace(0, 1, 4), np.zeros(4)]))
    assert line.shape == (4, 1)
    assert detect_grid(np.random.default_rng(0).normal(size=(2, 10))) is None


def test_separable_flops_scale_as_n_to_three_halves():
    for m in (10, 20):
        sep = SeparableKernel(detect_grid(grid_positions(m, 1.0)), 0.1)
        assert sep.flops() == 4 * m**3


@pytest.mark.parametrize("gamma", [1e-3, 0.05, 2.0])
def test_log_matmul_equals_logsumexp_over_3000_orders_of_magnitude(gamma):
    """The shifted product repairs every entry whose sum fell below SAFE_SUM."""
    rng = np.random.default_rng(4)
    x = np.linspace(-1.0, 1.0, 40)
    L = -((x[:, None] - x[None, :]) ** 2) / gamma
    U = rng.uniform(-7000.0, 0.0, size=(3, 25, 40))
    U[0, 0, :] = -np.inf  # an empty row
    U[1, :, 5] = -np.inf
    expected = logsumexp(U[..., None, :] + L)
    got = log_matmul(U, L, np.exp(L))
    assert np.all(np.isneginf(got[0, 0])) and np.all(np.isneginf(expected[0, 0]))
    finite = np.isfinite(expected)
    assert np.array_equal(finite, np.isfinite(got))
    assert np.allclose(got[finite], expected[finite], rtol=1e-13, atol=1e-12)


def test_dense_memory_limit_is_a_config_error(monkeypatch):
    import plugins.jko._kernel as kernel_module

    monkeypatch.setattr(kernel_module, "MAX_DENSE_BYTES", 16 * 40**2)
    points = grid_positions(7, 1.0)  # 49 positions: 16 * 49^2 bytes
    with pytest.raises(ConfigError, match="GiB"):
        make_kernel(points, 0.1, kind="dense")
    assert make_kernel(points, 0.1).kinds == ["separable"]


def _grid3(shape=(4, 5, 6), extent=1.0):
    """Positions on a 3-D grid (2-D inputs with a bias), first axis slowest."""
    axes = [np.linspace(-extent, extent, m) for m in shape]
    mesh = np.meshgrid(*axes, indexing="ij")
    return np.stack([g.ravel() for g in mesh])


@pytest.mark.parametrize("gamma", [0.05, 0.5])
def test_three_dimensional_grid_axis_by_axis_equals_dense(gamma):
    """K = K_1 (x) K_2 (x) K_3 on a 4 x 5 x 6 grid, both signs as blocks, shuffled copy."""
    G = _grid3()
    P = G.shape[1]
    rng = np.random.default_rng(3)
    perm = rng.permutation(P)
    points = np.hstack([G, G[:, perm]])
    groups = [np.arange(P), np.arange(P, 2 * P)]
    sep = make_kernel(points, gamma, groups, kind="separable")
    dense = make_kernel(points, gamma, groups, kind="dense")
    assert set(sep.kinds) == {"separable"}
    assert [k.shape for _, k in sep.blocks] == [(4, 5, 6), (4, 5, 6)]
    C = np.sum((points[:, :P, None] - points[:, None, :P]) ** 2, axis=0)
    assert np.allclose(dense.blocks[0][1].matrix, np.exp(-C / gamma), rtol=1e-12, atol=0)
    V = rng.random((3, 2 * P)) * np.exp(rng.normal(scale=3, size=(3, 2 * P)))  # a stack of 3
    KV = dense.apply(V)
    assert np.allclose(sep.apply(V), KV, rtol=1e-12, atol=0)
    assert np.allclose(sep.log_apply(np.log(V)), np.log(KV), rtol=0, atol=1e-12)
    for row in range(3):
        assert np.allclose(sep.apply(V[row]), KV[row], rtol=1e-12, atol=0)
