"""Activation patterns: exact enumeration against brute force and linear programs."""

import itertools

import numpy as np
import pytest

from core.errors import ConfigError
from plugins.convex._patterns import (
    count_exact_candidates,
    exact_patterns,
    gate_masks,
    neuron_patterns,
    realisable,
    sampled_patterns,
    unique_masks,
)


def _set(masks):
    return {column.tobytes() for column in np.asarray(masks, dtype=bool).T}


def _brute(X, n_gates, seed=0):
    """Patterns of many random gates: a subset of the exact ones, all of them when
    the cells are not too small."""
    G = np.random.default_rng(seed).standard_normal((X.shape[1], n_gates))
    return unique_masks(gate_masks(X, G))


def _bias(x):
    return np.column_stack([x, np.ones(len(x))])


def test_exact_1d_with_bias_are_the_prefixes_and_suffixes():
    x = np.random.default_rng(1).uniform(-1, 1, 9)
    masks = exact_patterns(_bias(x))
    order = np.argsort(x)
    expected = set()
    for k in range(1, len(x) + 1):  # the k smallest points, the k largest points
        for chosen in (order[:k], order[-k:]):
            column = np.zeros(len(x), dtype=bool)
            column[chosen] = True
            expected.add(column.tobytes())
    assert masks.shape == (9, 2 * 9 - 1)
    assert _set(masks) == expected


def test_exact_1d_equals_brute_force_over_many_gates():
    X = _bias(np.linspace(-0.5, 0.5, 15))
    masks = exact_patterns(X)
    assert _set(masks) == _set(_brute(X, 100_000))
    assert masks.shape[1] == 29


def test_exact_1d_with_repeated_points_equals_brute_force():
    X = _bias(np.array([-1.0, 0.0, 0.0, 1.0, 2.0, 2.0]))
    masks = exact_patterns(X)
    assert _set(masks) == _set(_brute(X, 50_000))
    assert masks.shape[1] == 2 * 4 - 1  # four distinct points


@pytest.mark.parametrize("d", [1, 2, 3, 4])
def test_exact_general_d_is_every_realisable_pattern(d):
    """Against a linear program on each of the 2^n candidate patterns."""
    X = np.random.default_rng(d).standard_normal((7, d))
    masks = exact_patterns(X)
    realised = set()
    for bits in itertools.product((False, True), repeat=7):
        column = np.array(bits)
        if column.any() and realisable(X, column):
            realised.add(column.tobytes())
    assert _set(masks) == realised
    assert not np.any(np.all(~masks, axis=0))
    # general position: 2 sum_{k<d} C(n-1, k) cells, less the all-negative one if any
    cells = 2 * sum(count_exact_candidates(6, k + 1) // 2 ** (k + 1) for k in range(d))
    assert masks.shape[1] in (cells, cells - 1)


def test_exact_with_points_on_one_hyperplane_through_the_origin():
    """Four points on the plane x3 = 0, two more off it: the LP filter decides."""
    rng = np.random.default_rng(3)
    X = np.vstack(
        [np.column_stack([rng.standard_normal((4, 2)), np.zeros(4)]), rng.normal(size=(2, 3))]
    )
    X = np.vstack([X, X[:1]])  # and a repeated point
    masks = exact_patterns(X)
    assert _set(masks) == {
        np.array(bits).tobytes()
        for bits in itertools.product((False, True), repeat=7)
        if any(bits) and realisable(X, np.array(bits))
    }


def test_zero_rows_are_always_active():
    X = np.array([[1.0, 0.0], [0.0, 0.0], [0.0, 1.0]])
    masks = exact_patterns(X)
    assert np.all(masks[1])
    assert _set(masks) == _set(_brute(X, 20_000))


def test_exact_refuses_beyond_the_candidate_limit():
    X = np.random.default_rng(0).standard_normal((100, 5))
    assert count_exact_candidates(100, 5) > 10**6
    with pytest.raises(ConfigError, match="use patterns='sampled'"):
        exact_patterns(X)
    with pytest.raises(ConfigError, match="max_candidates"):
        exact_patterns(X[:20, :3], max_candidates=10)


def test_sampled_patterns_are_distinct_non_zero_and_seeded():
    X = _bias(np.linspace(-1, 1, 12))
    masks = sampled_patterns(X, 200, np.random.default_rng(5))
    assert masks.shape[0] == 12 and 1 <= masks.shape[1] <= 200
    assert len(_set(masks)) == masks.shape[1]
    assert np.all(masks.any(axis=0))
    assert _set(masks) <= _set(exact_patterns(X))
    again = sampled_patterns(X, 200, np.random.default_rng(5))
    assert np.array_equal(masks, again)
    # the gates are the generator's first standard normals, shape (d, count)
    G = np.random.default_rng(5).standard_normal((2, 200))
    assert _set(masks) == _set(unique_masks(X @ G >= 0))


def test_neuron_patterns_merge_repeated_pattern_and_sign_only():
    X = _bias(np.array([-1.0, 0.0, 1.0]))
    W = np.array([[1.0, 2.0, 1.0, -1.0, 0.0], [0.0, 0.0, 0.0, -5.0, -1.0]])
    a = np.array([1.0, 0.5, -1.0, 2.0, 1.0])
    masks, signs = neuron_patterns(X, W, a)
    # neurons 0 and 1 share pattern and sign; neuron 2 has that pattern with sign -1;
    # neuron 3 is active nowhere, neuron 4 only at... nowhere either (b = -1 < 0)
    assert masks.shape == (3, 2)
    assert list(signs) == [1, -1]
    assert np.array_equal(masks[:, 0], [False, True, True])


def test_unique_masks_keeps_first_occurrences_in_order():
    M = np.array([[1, 0, 1, 0, 1], [0, 0, 1, 0, 0]], dtype=bool)
    assert np.array_equal(unique_masks(M), M[:, [0, 2]])
