"""Distance plugins of proxpoint: closed forms, brute force, finite differences, invariances."""

import itertools
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT

from core.config import resolve
from core.errors import ConfigError
from core.params import validate_params
from core.registry import Registry
from core.store import load_state, save_state

torch = pytest.importorskip("torch")
ot = pytest.importorskip("ot")

from plugins.proxpoint import Frobenius, SlicedWasserstein, Wasserstein  # noqa: E402
from plugins.proxpoint._assignment import (  # noqa: E402
    IMPROVABLE,
    OPTIMAL,
    CertifiedAssignment,
    _has_cycle,
    assignment_costs,
    certify_assignment,
    solve_assignment,
)
from plugins.proxpoint._distances import neuron_weights, sign_groups  # noqa: E402


def _distance(cls, rng=None, **options):
    distance = cls(**validate_params(f"distance ({cls.name})", options, cls.params))
    distance.setup(None, np.random.default_rng(0) if rng is None else rng)
    return distance


def _value(distance, W, W_prev, a):
    as_tensor = (torch.as_tensor(np.asarray(x, dtype=np.float64)) for x in (W, W_prev, a))
    return float(distance.value(*as_tensor))


def _value_and_grad(distance, W, W_prev, a):
    W = torch.tensor(W, dtype=torch.float64, requires_grad=True)
    value = distance.value(W, torch.as_tensor(W_prev), torch.as_tensor(a))
    (grad,) = torch.autograd.grad(value, W)
    return float(value.detach()), grad.numpy()


def _networks(d=3, m=9, seed=0, signs=None):
    rng = np.random.default_rng(seed)
    W_prev = rng.normal(size=(d, m))
    W = W_prev + rng.normal(size=(d, m))
    a = rng.choice([-1.0, 1.0], size=m) * rng.uniform(0.5, 2.0, size=m) if signs is None else signs
    return W, W_prev, a


def _brute_force(W, W_prev, a):
    """(1/m) sum over sign groups of the optimal assignment cost (scipy, independently)."""
    from scipy.optimize import linear_sum_assignment

    m = W.shape[1]
    total = 0.0
    for sign in (-1.0, 1.0):
        idx = np.flatnonzero(np.sign(a) == sign)
        C = ((W[:, idx, None] - W_prev[:, None, idx]) ** 2).sum(axis=0)
        rows, cols = linear_sum_assignment(C)
        total += C[rows, cols].sum()
    return total / m


def _transport_lp(X, Y, p):
    """Optimal transport cost between sum p_i delta_x_i and sum p_j delta_y_j, by scipy's LP."""
    from scipy.optimize import linprog

    n = p.size
    C = ((X[:, None, :] - Y[None, :, :]) ** 2).sum(axis=-1)
    rows = np.kron(np.eye(n), np.ones(n))
    cols = np.kron(np.ones(n), np.eye(n))
    result = linprog(C.ravel(), A_eq=np.vstack([rows, cols]), b_eq=np.r_[p, p], method="highs")
    assert result.status == 0
    return result.fun


# -- groups and weights ----------------------------------------------------------------
def test_groups_are_sign_patterns_and_weights_sum_to_one():
    assert sign_groups(np.array([2.0, -1.0, 0.0, 3.0])).tolist() == [2, 0, 1, 2]
    rows = np.array([[1.0, -1.0], [2.0, 1.0], [3.0, -0.5], [-1.0, 1.0]])
    labels = sign_groups(rows)
    assert labels[0] == labels[2] and len(set(labels.tolist())) == 3
    assert sign_groups(np.zeros(0)).shape == (0,)
    np.testing.assert_allclose(neuron_weights(np.array([1.0, -1.0, 2.0]), "uniform"), [1 / 3] * 3)
    np.testing.assert_allclose(
        neuron_weights(np.array([1.0, -1.0, 2.0]), "abs_a"), [0.25, 0.25, 0.5]
    )
    np.testing.assert_allclose(
        neuron_weights(np.array([[3.0, 4.0], [0.0, 5.0]]), "abs_a"), [0.5, 0.5]
    )
    assert neuron_weights(np.zeros(3), "abs_a").tolist() == [0.0, 0.0, 0.0]


# -- frobenius -------------------------------------------------------------------------
def test_frobenius_is_the_mean_squared_entry_change():
    W, W_prev, a = _networks(d=4, m=5)
    value, grad = _value_and_grad(_distance(Frobenius), W, W_prev, a)
    assert value == pytest.approx(((W - W_prev) ** 2).sum() / 20, rel=1e-14)
    np.testing.assert_allclose(grad, 2 * (W - W_prev) / 20, rtol=1e-13)


# -- wasserstein: values ---------------------------------------------------------------
@pytest.mark.parametrize("reuse_plan", [True, False])
@pytest.mark.parametrize("seed", range(4))
def test_wasserstein_equals_the_brute_force_assignment_with_signs_shuffled(reuse_plan, seed):
    rng = np.random.default_rng(seed)
    m = 9
    signs = rng.permutation(np.r_[np.ones(6), -np.ones(3)])  # unequal counts, shuffled
    W, W_prev, a = _networks(m=m, seed=seed, signs=signs * rng.uniform(0.5, 2, m))
    distance = _distance(Wasserstein, reuse_plan=reuse_plan)
    assert _value(distance, W, W_prev, a) == pytest.approx(_brute_force(W, W_prev, a), rel=1e-12)


def test_wasserstein_equals_permutations_enumerated_on_a_tiny_set():
    W, W_prev, a = _networks(d=2, m=6, seed=5, signs=np.array([1.0, -1, 1, -1, 1, 1]))
    best = {}
    for sign in (1.0, -1.0):
        idx = np.flatnonzero(a == sign)
        best[sign] = min(
            ((W[:, idx] - W_prev[:, list(p)]) ** 2).sum() for p in itertools.permutations(idx)
        )
    expected = (best[1.0] + best[-1.0]) / 6
    for reuse_plan in (True, False):
        distance = _distance(Wasserstein, reuse_plan=reuse_plan)
        assert _value(distance, W, W_prev, a) == pytest.approx(expected, rel=1e-12)


def test_signs_never_mix_even_when_mixing_is_cheaper():
    # W's positive neuron sits on W_prev's negative one and vice versa: a transport
    # ignoring signs would cost 0, a matching within signs moves both by distance 2.
    W_prev = np.array([[-1.0, 1.0]])
    W = np.array([[1.0, -1.0]])
    a = np.array([1.0, -1.0])
    for options in ({}, {"reuse_plan": False}, {"weights": "abs_a"}):
        assert _value(_distance(Wasserstein, **options), W, W_prev, a) == pytest.approx(4.0)
    unsigned = ot.emd2([], [], ot.dist(W.T, W_prev.T))
    assert unsigned == pytest.approx(0.0)


def test_abs_a_weights_equal_the_transport_linear_program():
    rng = np.random.default_rng(3)
    m = 6
    W, W_prev, _ = _networks(d=2, m=m, seed=3)
    a = np.r_[1.0, 2.0, 0.5, -1.0, -3.0, -0.25] * rng.permutation([1, 1, 1, 1, 1, 1])
    a = a[rng.permutation(m)]
    p = np.abs(a) / np.abs(a).sum()
    expected = 0.0
    for sign in (1.0, -1.0):
        idx = np.flatnonzero(np.sign(a) == sign)
        expected += _transport_lp(W[:, idx].T, W_prev[:, idx].T, p[idx])
    for reuse_plan in (True, False):  # abs_a always solves
        distance = _distance(Wasserstein, weights="abs_a", reuse_plan=reuse_plan)
        assert _value(distance, W, W_prev, a) == pytest.approx(expected, rel=1e-9)


def test_abs_a_with_equal_magnitudes_is_uniform():
    W, W_prev, _ = _networks(m=8, seed=7)
    a = np.array([2.0, -2, 2, 2, -2, -2, 2, -2])
    uniform = _value(_distance(Wasserstein), W, W_prev, a)
    assert _value(_distance(Wasserstein, weights="abs_a"), W, W_prev, a) == pytest.approx(
        uniform, rel=1e-12
    )


@pytest.mark.parametrize("options", [{}, {"reuse_plan": False}, {"weights": "abs_a"}])
def test_permuting_neurons_within_a_sign_leaves_wasserstein_unchanged_not_frobenius(options):
    W, W_prev, a = _networks(m=10, seed=2, signs=np.r_[np.ones(5), -np.ones(5)][::-1] * 1.0)
    a = a[np.random.default_rng(0).permutation(10)]
    rng = np.random.default_rng(1)
    within = np.arange(10)
    for sign in (1.0, -1.0):
        idx = np.flatnonzero(a == sign)
        within[idx] = rng.permutation(idx)
    distance = _distance(Wasserstein, **options)
    base = _value(distance, W, W_prev, a)
    shuffled = _value(_distance(Wasserstein, **options), W, W_prev[:, within], a)
    assert shuffled == pytest.approx(base, rel=1e-12)
    # the same permutation of both networks (and of a) does not change it either
    every = rng.permutation(10)
    both = _value(_distance(Wasserstein, **options), W[:, every], W_prev[:, every], a[every])
    assert both == pytest.approx(base, rel=1e-12)
    frobenius = _distance(Frobenius)
    assert _value(frobenius, W, W_prev[:, within], a) != pytest.approx(
        _value(frobenius, W, W_prev, a), rel=1e-3
    )


def test_wasserstein_is_at_most_d_times_frobenius_with_equality_at_the_identity():
    W, W_prev, a = _networks(d=3, m=12, seed=4)
    w2 = _value(_distance(Wasserstein), W, W_prev, a)
    assert w2 <= 3 * _value(_distance(Frobenius), W, W_prev, a) + 1e-12
    near = W_prev + 1e-3 * np.random.default_rng(0).normal(size=W_prev.shape)
    assert _value(_distance(Wasserstein), near, W_prev, a) == pytest.approx(
        3 * _value(_distance(Frobenius), near, W_prev, a), rel=1e-12
    )


@pytest.mark.parametrize(
    "cls, options",
    [
        (Frobenius, {}),
        (Wasserstein, {}),
        (Wasserstein, {"reuse_plan": False}),
        (Wasserstein, {"weights": "abs_a"}),
        (SlicedWasserstein, {"n_projections": 20}),
        (SlicedWasserstein, {"n_projections": 20, "weights": "abs_a"}),
    ],
)
def test_zero_with_zero_gradient_between_a_set_and_itself(cls, options):
    _, W_prev, a = _networks(m=7, seed=1)
    value, grad = _value_and_grad(_distance(cls, **options), W_prev.copy(), W_prev, a)
    assert value == 0.0 or abs(value) < 1e-15
    assert np.all(np.isfinite(grad)) and np.abs(grad).max() < 1e-14


@pytest.mark.parametrize(
    "cls, options",
    [
        (Frobenius, {}),
        (Wasserstein, {}),
        (Wasserstein, {"reuse_plan": False}),
        (Wasserstein, {"weights": "abs_a"}),
        (SlicedWasserstein, {"n_projections": 5}),
        (SlicedWasserstein, {"n_projections": 5, "weights": "abs_a"}),
    ],
)
def test_edge_cases_no_neuron_one_sign_one_neuron_and_zero_a(cls, options):
    empty = np.zeros((3, 0))
    value, grad = _value_and_grad(_distance(cls, **options), empty, empty, np.zeros(0))
    assert value == 0.0 and grad.shape == (3, 0)
    W, W_prev, _ = _networks(m=5, seed=2)
    one_sign = _value(_distance(cls, **options), W, W_prev, np.full(5, 0.7))
    assert np.isfinite(one_sign) and one_sign > 0
    single = _value(_distance(cls, **options), W[:, :1], W_prev[:, :1], np.ones(1))
    expected = ((W[:, 0] - W_prev[:, 0]) ** 2).sum()
    if cls is Frobenius:
        expected /= 3
    elif cls is SlicedWasserstein:
        assert 0 < single <= expected + 1e-12  # the mean squared projection of one vector
        expected = single
    assert single == pytest.approx(expected, rel=1e-12)
    zero_a = _value(_distance(cls, **options), W, W_prev, np.zeros(5))
    if options.get("weights") == "abs_a":
        assert zero_a == 0.0  # nothing weighs
    else:
        assert zero_a == pytest.approx(
            _value(_distance(cls, **options), W, W_prev, np.ones(5)), rel=1e-12
        )  # a = 0 is one group, like a single sign


@pytest.mark.parametrize(
    "cls, options",
    [
        (Frobenius, {}),
        (Wasserstein, {}),
        (Wasserstein, {"reuse_plan": False}),
        (SlicedWasserstein, {}),
    ],
)
def test_float32_keeps_its_dtype_and_agrees_with_float64(cls, options):
    W, W_prev, a = _networks(m=10, seed=3)
    W32 = torch.tensor(W, dtype=torch.float32, requires_grad=True)
    value = _distance(cls, **options).value(W32, torch.tensor(W_prev, dtype=torch.float32), a)
    (grad,) = torch.autograd.grad(value, W32)
    assert value.dtype == grad.dtype == torch.float32
    expected, expected_grad = _value_and_grad(_distance(cls, **options), W, W_prev, a)
    assert float(value.detach()) == pytest.approx(expected, rel=1e-5)
    np.testing.assert_allclose(grad.numpy(), expected_grad, rtol=1e-4, atol=1e-6)


# -- wasserstein: gradient, exchanged, plan reuse ----------------------------------------
@pytest.mark.parametrize("options", [{}, {"reuse_plan": False}, {"weights": "abs_a"}])
def test_wasserstein_gradient_matches_finite_differences(options):
    W, W_prev, a = _networks(d=3, m=8, seed=6)
    _, grad = _value_and_grad(_distance(Wasserstein, **options), W, W_prev, a)
    h = 1e-6
    numeric = np.zeros_like(W)
    for index in np.ndindex(*W.shape):
        step = np.zeros_like(W)
        step[index] = h
        up = _value(_distance(Wasserstein, **options), W + step, W_prev, a)
        down = _value(_distance(Wasserstein, **options), W - step, W_prev, a)
        numeric[index] = (up - down) / (2 * h)
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("options", [{}, {"reuse_plan": False}, {"weights": "abs_a"}])
def test_exchanged_is_zero_at_the_identity_and_counts_a_known_swap(options):
    _, W_prev, _ = _networks(d=2, m=6, seed=8)
    a = np.array([1.0, -1.0, 1.0, -1.0, 1.0, -1.0])
    distance = _distance(Wasserstein, **options)
    assert distance.scalars() == {"exchanged": 0.0}  # before any value
    near = W_prev + 1e-4
    _value(distance, near, W_prev, a)
    assert distance.scalars() == {"exchanged": 0.0}
    swapped = W_prev[:, [2, 1, 0, 3, 4, 5]]  # neurons 0 and 2 (both positive) trade places
    assert _value(distance, swapped, W_prev, a) == pytest.approx(0.0, abs=1e-14)
    assert distance.scalars()["exchanged"] == pytest.approx(2 / 6, rel=1e-12)
    cycle = W_prev[:, [4, 1, 0, 3, 2, 5]]  # a 3-cycle of the positive neurons
    _value(distance, cycle, W_prev, a)
    assert distance.scalars()["exchanged"] == pytest.approx(3 / 6, rel=1e-12)


def test_plan_reuse_gives_the_exact_values_and_gradients_along_a_trajectory():
    rng = np.random.default_rng(11)
    d, m = 2, 40
    W_prev = rng.normal(size=(d, m))
    target = W_prev + 0.6 * rng.normal(size=(d, m))
    a = rng.choice([-1.0, 1.0], size=m)
    reused = _distance(Wasserstein)
    exact = _distance(Wasserstein, reuse_plan=False)
    W = W_prev.copy()
    exchanged = []
    for _ in range(3):
        start = W.copy()
        for _ in range(15):
            v_reused, g_reused = _value_and_grad(reused, W, start, a)
            v_exact, g_exact = _value_and_grad(exact, W, start, a)
            assert v_reused == pytest.approx(v_exact, rel=1e-12, abs=1e-15)
            np.testing.assert_allclose(g_reused, g_exact, rtol=1e-10, atol=1e-14)
            assert reused.scalars()["exchanged"] == pytest.approx(exact.scalars()["exchanged"])
            exchanged.append(reused.scalars()["exchanged"])
            W = W - 0.3 * ((W - target) + g_reused * m)
    cache = reused.assignment_
    # both branches ran: plans changed (and were solved again) and were reused
    assert max(exchanged) > 0 and cache.n_solves > 0 and cache.n_certified > cache.n_solves


def test_plan_reuse_state_dict_round_trips_through_the_store(tmp_path):
    W, W_prev, a = _networks(m=12, seed=9)
    first = _distance(Wasserstein)
    _value(first, W, W_prev, a)
    save_state(tmp_path / "state.npz", first.state_dict())
    second = _distance(Wasserstein)
    second.load_state_dict(load_state(tmp_path / "state.npz"))
    moved = W + 0.01
    assert _value(second, moved, W_prev, a) == _value(first, moved, W_prev, a)
    np.testing.assert_array_equal(second.assignment_.perm, first.assignment_.perm)
    assert second.scalars() == first.scalars()


# -- the certificate -----------------------------------------------------------------------
def test_certificate_accepts_the_optimum_and_finds_a_negative_cycle_otherwise():
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(30, 3)), rng.normal(size=(30, 3))
    C, tol = assignment_costs(X, Y)
    full = ((X[:, None] - Y[None]) ** 2).sum(-1)
    np.testing.assert_allclose(C, full - (X**2).sum(1)[:, None], atol=1e-12)
    best = solve_assignment(C)
    status, v = certify_assignment(C, best, np.zeros(30), tol, 31)
    assert status == OPTIMAL
    # the potentials certify it: C_ij - u_i - v_j >= -tol with u_i = C_i,best(i) - v_best(i)
    u = C[np.arange(30), best] - v[best]
    assert (C - u[:, None] - v[None, :]).min() >= -tol
    worse = best.copy()
    worse[[0, 1]] = worse[[1, 0]]  # a swap of the (unique) optimum costs more
    assert full[np.arange(30), worse].sum() > full[np.arange(30), best].sum()
    assert certify_assignment(C, worse, np.zeros(30), tol, 31)[0] == IMPROVABLE
    # from the optimum's potentials too: the swap's 2-cycle is negative
    assert certify_assignment(C, worse, v, tol, 31)[0] == IMPROVABLE


def test_predecessor_cycles():
    assert not _has_cycle(np.array([-1, 0, 1, 1]))
    assert _has_cycle(np.array([-1, 2, 3, 1]))
    assert _has_cycle(np.array([0]))


def test_a_new_previous_network_starts_from_the_identity():
    rng = np.random.default_rng(2)
    Y = rng.normal(size=(6, 2))
    cache = CertifiedAssignment()
    labels = np.zeros(6, dtype=int)
    assert cache(Y[[1, 0, 2, 3, 4, 5]], Y, labels).tolist() == [1, 0, 2, 3, 4, 5]
    assert cache(Y + 1e-3, Y + 2e-3, labels).tolist() == list(range(6))


# -- sliced --------------------------------------------------------------------------------
@pytest.mark.parametrize("weights", ["uniform", "abs_a"])
def test_sliced_equals_the_exact_distance_in_one_dimension(weights):
    W, W_prev, a = _networks(d=1, m=11, seed=3)
    sliced = _value(_distance(SlicedWasserstein, n_projections=4, weights=weights), W, W_prev, a)
    exact = _value(_distance(Wasserstein, weights=weights), W, W_prev, a)
    assert sliced == pytest.approx(exact, rel=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_sliced_is_below_the_exact_distance_in_higher_dimension(seed):
    W, W_prev, a = _networks(d=4, m=10, seed=seed)
    for weights in ("uniform", "abs_a"):
        exact = _value(_distance(Wasserstein, weights=weights), W, W_prev, a)
        distance = _distance(SlicedWasserstein, np.random.default_rng(seed), weights=weights)
        assert 0 < _value(distance, W, W_prev, a) <= exact


def test_sliced_uniform_equals_pots_squared_sliced_distance():
    W, W_prev, _ = _networks(d=3, m=9, seed=4)
    distance = _distance(SlicedWasserstein, n_projections=30)
    value = _value(distance, W, W_prev, np.ones(9))
    theta = distance.state_dict()["projections"]
    assert theta.shape == (3, 30)
    np.testing.assert_allclose(np.linalg.norm(theta, axis=0), 1.0, rtol=1e-14)
    pot = ot.sliced_wasserstein_distance(W.T, W_prev.T, projections=theta, p=2)
    assert value == pytest.approx(pot**2, rel=1e-12)


def test_sliced_gradient_matches_finite_differences():
    W, W_prev, a = _networks(d=3, m=8, seed=6)
    for weights in ("uniform", "abs_a"):
        # resample="step": the directions stay those of W_prev while W moves
        distance = _distance(SlicedWasserstein, n_projections=7, weights=weights)
        _, grad = _value_and_grad(distance, W, W_prev, a)
        h = 1e-6
        numeric = np.zeros_like(W)
        for index in np.ndindex(*W.shape):
            step = np.zeros_like(W)
            step[index] = h
            numeric[index] = (
                _value(distance, W + step, W_prev, a) - _value(distance, W - step, W_prev, a)
            ) / (2 * h)
        np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("resample", ["step", "call"])
def test_sliced_is_reproducible_and_continues_after_its_state_dict(resample, tmp_path):
    W, W_prev, a = _networks(m=8, seed=1)

    def values(distance, calls):
        out = []
        for k in range(calls):
            previous = W_prev + (k // 2)  # a new proximal problem every two calls
            out.append(_value(distance, W, previous, a))
        return out

    options = {"n_projections": 3, "resample": resample}
    straight = values(_distance(SlicedWasserstein, np.random.default_rng(5), **options), 6)
    again = _distance(SlicedWasserstein, np.random.default_rng(5), **options)
    assert values(again, 6) == straight
    first = _distance(SlicedWasserstein, np.random.default_rng(5), **options)
    head = values(first, 3)
    save_state(tmp_path / "state.npz", first.state_dict())
    second = _distance(SlicedWasserstein, np.random.default_rng(99), **options)
    second.load_state_dict(load_state(tmp_path / "state.npz"))
    tail = [_value(second, W, W_prev + (k // 2), a) for k in range(3, 6)]
    assert head + tail == straight
    # "step" draws once per W_prev, "call" at every call
    assert (straight[0] == straight[1]) == (resample == "step")
    other = values(_distance(SlicedWasserstein, np.random.default_rng(6), **options), 6)
    assert other != straight


# -- the plugins in the registry and the config resolver -----------------------------------
def _config(tmp_path, distance, options):
    return {
        "experiment": "distances",
        "model": {"width": 4},
        "data": {"name": "sinus", "n": 5},
        "init": {"name": "normal"},
        "algorithm": {"name": "proxpoint", "distance": distance, "distance_options": options},
        "stoppers": {"max_steps": {"steps": 1}},
        "run": {"runs_dir": str(tmp_path), "display": "off"},
    }


def test_bad_options_are_one_line(tmp_path):
    from plugins import BUILTIN_PLUGINS

    registry = Registry(builtins=BUILTIN_PLUGINS, entry_points=False)
    assert {"frobenius", "wasserstein", "sliced"} <= set(registry.names("distance"))
    resolved = resolve(_config(tmp_path, "sliced", {"n_projections": 7}), registry)
    assert resolved["algorithm"]["distance_options"] == {
        "n_projections": 7,
        "weights": "uniform",
        "resample": "step",
    }
    for distance, options, match in (
        ("sliced", {"n_projections": 0}, r"n_projections must be an int in \[1, inf\); got 0"),
        ("wasserstein", {"weights": "abs"}, r"weights must be one of \{'uniform', 'abs_a'\}"),
        ("wasserstein", {"reuse": False}, r"unknown key 'reuse'.*did you mean 'reuse_plan'"),
        ("frobenius", {"weights": "uniform"}, r"unknown key 'weights'"),
    ):
        with pytest.raises(ConfigError, match=match) as info:
            resolve(_config(tmp_path, distance, options), registry)
        assert "\n" not in str(info.value)


def test_the_package_imports_without_torch_and_pot():
    code = (
        "import sys\n"
        "sys.modules['torch'] = None\n"
        "sys.modules['ot'] = None\n"
        "import plugins.proxpoint as p\n"
        "print(sorted(c.name for c in p.relulab_distances()))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["['frobenius',", "'sliced',", "'wasserstein']"]
