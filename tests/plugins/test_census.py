"""The census of end points: compact form, global test, merging, saddles, Wilson intervals."""

import numpy as np
import pytest

from plugins.population import (
    compact_form,
    descend,
    population_hessian,
    reconstruct,
    teacher_matrix,
)
from plugins.population._census import census_of_points, classify_point, is_global, wilson_interval

RNG = np.random.default_rng(2018)

K7 = np.array([[-0.6327039049, 0.2616910758, 0.0], [0.1859910463, 0.9969227988, -0.0350801559]])
"""The k = 7 spurious minimum of ItaySafran/Overparameterization's README (p = [1, 6])."""


def _permutations(k):
    return np.eye(k)[RNG.permutation(k)], np.eye(k)[:, RNG.permutation(k)]


@pytest.fixture(scope="module")
def k7_minimum():
    V = np.eye(7)
    W, _, g = descend(reconstruct(K7, [1, 6])[None], V[None], 5 / 7, 1e-12, 10_000)
    assert g[0] <= 1e-12
    return W[0]


def test_reconstruct_builds_the_blocks():
    W = reconstruct(
        [[0.9, 0.1, 0.2, -0.3], [0.4, 0.8, 0.5, 0.0], [0.6, 0.7, 0.75, 0.05]], [2, 1, 3]
    )
    assert W.shape == (6, 6)
    np.testing.assert_array_equal(np.diag(W), [0.9, 0.9, 0.8, 0.75, 0.75, 0.75])
    assert W[0, 1] == W[1, 0] == -0.3  # inside block 0
    assert W[3, 4] == W[5, 3] == 0.05  # inside block 2
    np.testing.assert_array_equal(W[:2, 2], 0.1)  # block 0 rows, block 1 column
    np.testing.assert_array_equal(W[2, 3:], 0.5)
    np.testing.assert_array_equal(W[3:, :2], 0.6)


@pytest.mark.parametrize("p", [[1, 2, 3], [2, 4], [3, 3, 1], [1, 6]])
def test_compact_form_round_trips_under_the_symmetry(p):
    b = len(p)
    vals = np.zeros((b, b + 1))
    vals[:, :b] = RNG.uniform(-0.3, 0.3, (b, b)).round(4)
    vals[np.arange(b), np.arange(b)] = np.sort(RNG.uniform(0.5, 1.0, b)).round(4)
    vals[:, -1] = [round(RNG.uniform(-0.3, 0.3), 4) if size > 1 else 0.0 for size in p]
    W = reconstruct(vals, p)
    P, Q = _permutations(sum(p))
    found, found_p, blocks = compact_form(P @ W @ Q)
    assert found_p.tolist() == list(p)
    np.testing.assert_array_equal(found, vals)
    np.testing.assert_array_equal(reconstruct(found, found_p), blocks)
    np.testing.assert_array_equal(blocks, W)


def test_compact_form_of_the_published_minimum(k7_minimum):
    P, Q = _permutations(7)
    vals, p, blocks = compact_form(P @ k7_minimum @ Q)
    assert p.tolist() == [1, 6]
    np.testing.assert_allclose(vals, K7, atol=1e-10)
    assert np.linalg.norm(reconstruct(vals, p) - blocks) < 1e-9


def test_compact_form_refuses_points_without_diagonal_values():
    assert compact_form(np.full((4, 4), 0.25)) is None
    assert compact_form(np.ones((3, 4))) is None


def test_global_test():
    P, Q = _permutations(6)
    assert is_global(P @ np.eye(6) @ Q, np.eye(6))
    assert not is_global(np.eye(6) + 1e-5 * RNG.standard_normal((6, 6)), np.eye(6))
    V = teacher_matrix(3, 5, "orthonormal", rng=RNG)
    assert is_global(V[:, [2, 0, 1]], V)
    # over-parameterised: teacher neuron 0 split in two aligned students, one zero neuron
    W = np.concatenate([0.3 * V[:, :1], 0.7 * V[:, :1], V[:, 1:], np.zeros((5, 1))], axis=1)
    assert is_global(W, V)
    W[:, 0] *= 1.01
    assert not is_global(W, V)


def _runs(*points):
    return [
        {"id": f"{i:04d}", "W": W, "V": np.eye(W.shape[0]), "grad_norm": 1e-13, "converged": True}
        for i, W in enumerate(points)
    ]


def test_census_merges_a_point_with_its_permuted_copies(k7_minimum):
    copies = []
    for _ in range(3):
        P, Q = _permutations(7)
        copies.append(P @ k7_minimum @ Q)
    census = census_of_points(_runs(*copies, np.eye(7)[:, ::-1]))
    assert census["global"] == 1 and census["non_global_minima"] == 3
    assert census["distinct_minima"] == 1
    minimum = census["points"][1]
    assert minimum["kind"] == "minimum" and minimum["multiplicity"] == 3
    assert minimum["p"] == [1, 6]
    np.testing.assert_allclose(minimum["vals"], K7, atol=1e-10)
    assert minimum["runs"] == ["0000", "0001", "0002"]
    assert minimum["reconstruction_error"] < 1e-9
    assert minimum["grad_norm"] < 1e-9 and minimum["min_eig"] > 1e-4 and minimum["strict"]
    assert minimum["norm_sum"] < 7 and not minimum["norm_sum_above_k"]
    assert minimum["loss"] == pytest.approx(0.0232027149, abs=1e-9)
    assert census["fraction_non_global"] == 0.75
    assert census["fraction_low"] < 0.75 < census["fraction_high"]


def test_census_keeps_different_points_apart(k7_minimum):
    vals, p, blocks = compact_form(k7_minimum)
    shifted = vals.copy()
    shifted[1, 1] += 2e-6  # a different point: 6 diagonal entries move, 4.9e-6 Frobenius
    other = reconstruct(shifted, p)
    census = census_of_points(_runs(blocks, other, blocks.T))
    assert census["distinct_minima"] + census["distinct_saddles"] == 3
    assert [pt["multiplicity"] for pt in census["points"]] == [1, 1, 1]
    # within the tolerance they merge
    near = reconstruct(vals + 1e-8 * (np.arange(vals.size).reshape(vals.shape) % 2), p)
    assert census_of_points(_runs(blocks, near))["points"][0]["multiplicity"] == 2


def test_a_planted_saddle_is_flagged_not_a_minimum():
    # all neurons equal along (1, ..., 1): a critical point of the symmetric subspace
    k = 5
    V = np.eye(k)
    W, _, g = descend(np.full((1, k, k), 0.3), V[None], 0.5, 1e-12, 10_000)
    assert g[0] <= 1e-12
    assert np.linalg.eigvalsh(population_hessian(W[0], V)).min() < -1.0
    census = census_of_points(_runs(W[0], W[0][:, ::-1]))
    assert census["saddles"] == 2 and census["non_global_minima"] == 0
    assert census["distinct_saddles"] == 1 and census["distinct_minima"] == 0
    (saddle,) = census["points"]
    assert saddle["kind"] == "saddle" and not saddle["strict"] and saddle["form"] == "raw"
    assert saddle["multiplicity"] == 2
    assert census["fraction_non_global"] == 0.0


def test_unconverged_runs_are_counted_apart():
    runs = _runs(np.eye(6), np.eye(6))
    runs[1]["converged"] = False
    census = census_of_points(runs)
    assert census["runs"] == 2 and census["converged"] == 1 and census["not_converged"] == 1
    assert census["not_converged_runs"] == ["0001"] and census["global"] == 1


def test_orthonormal_teacher_uses_the_compact_form_in_its_basis(k7_minimum):
    V = teacher_matrix(7, 7, "orthonormal", rng=RNG)
    point = classify_point(V @ k7_minimum, V)
    assert point["form"] == "compact" and point["p"].tolist() == [1, 6]
    np.testing.assert_allclose(point["vals"], K7, atol=1e-10)


def test_wilson_interval():
    assert wilson_interval(0, 10)[0] == 0.0
    assert wilson_interval(0, 10)[1] == pytest.approx(3.8414588 / 13.8414588, rel=1e-7)
    low, high = wilson_interval(5, 10)
    assert low + high == pytest.approx(1.0)
    assert wilson_interval(10, 10)[1] == pytest.approx(1.0)
