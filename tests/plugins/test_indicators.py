"""Indicator plugins against hand computations from the snapshot arrays."""

import math

import numpy as np
import pytest
from tiny_runs import make_run

from core import model
from plugins import indicators

INDICATORS = [
    indicators.Loss,
    indicators.NeuronNorms,
    indicators.DistanceFromInit,
    indicators.Patterns,
    indicators.ActivationPoints,
]


def snapshots(run):
    """(W, a) of every snapshot."""
    return list(zip(run.snapshots["W"], run.snapshots["a"]))


@pytest.fixture
def run(tmp_path):
    return make_run(tmp_path, width=7, n=12, steps=40, every=10)


def test_activation_points_are_minus_b_over_w_and_inf_without_slope():
    W = np.array([[2.0, 0.0, -0.5, 0.0], [1.0, 3.0, 1.0, 0.0]])
    np.testing.assert_array_equal(indicators.activation_points(W), [-0.5, np.inf, 2.0, np.inf])


def test_applies(tmp_path, run):
    assert all(cls().applies(run) for cls in INDICATORS)
    run5 = make_run(tmp_path / "d5", dim=5, bias=False)
    names = [cls.name for cls in INDICATORS if cls().applies(run5)]
    assert names == ["loss", "neuron_norms", "distance_from_init", "patterns"]
    assert not indicators.ActivationPoints().applies(make_run(tmp_path / "d2", dim=2, bias=False))


def test_loss_summary_reads_the_trace_and_meta(run):
    summary = indicators.Loss().summary(run)
    loss, steps = run.scalars["loss"], run.scalars["step"]
    assert summary["final"] == loss[-1]
    assert summary["best"] == loss.min() and summary["best_step"] == steps[np.argmin(loss)]
    assert summary["steps"] == 40 and summary["steps"] == run.meta["steps"]
    assert (summary["status"], summary["reason"]) == ("finished", "max_steps")


def test_loss_per_snapshot_is_the_model_loss_and_matches_the_trace(tmp_path):
    run = make_run(tmp_path, test=True)
    X, Y = run.problem["X"], run.problem["Y"]
    logged = dict(zip(run.scalars["step"], run.scalars["loss"]))
    for step, (W, a) in zip(run.snapshots.steps, snapshots(run)):
        values = indicators.Loss().per_snapshot(run, W, a)
        assert values["train"] == model.loss(X, Y, W, a) == logged[step]
        assert values["test"] == model.loss(run.problem["X_test"], run.problem["Y_test"], W, a)


@pytest.mark.parametrize("k", [1, 2])
def test_neuron_norms_by_hand(tmp_path, k):
    run = make_run(tmp_path, k=k)
    for W, a in snapshots(run):
        a2 = a.reshape(a.shape[0], -1)
        norms = [
            math.sqrt(sum(W[i, r] ** 2 for i in range(W.shape[0])))
            * math.sqrt(sum(a2[r, j] ** 2 for j in range(a2.shape[1])))
            for r in range(W.shape[1])
        ]
        values = indicators.NeuronNorms().per_snapshot(run, W, a)
        assert values["mean"] == pytest.approx(sum(norms) / len(norms), rel=1e-12)
        assert values["max"] == pytest.approx(max(norms), rel=1e-12)
        assert values["sum"] == pytest.approx(sum(norms), rel=1e-12)


def test_distance_from_init_is_zero_at_snapshot_zero_then_by_hand(run):
    ind = indicators.DistanceFromInit()
    W0, a0 = run.problem["W0"], run.problem["a0"]
    (first, *rest) = snapshots(run)
    assert ind.per_snapshot(run, *first) == {"W_fro": 0.0, "a_norm": 0.0, "W_max_abs": 0.0}
    for W, a in rest:
        dW = [W[i, r] - W0[i, r] for i in range(W.shape[0]) for r in range(W.shape[1])]
        values = ind.per_snapshot(run, W, a)
        assert values["W_fro"] == pytest.approx(math.sqrt(sum(x * x for x in dW)), rel=1e-12)
        assert values["a_norm"] == pytest.approx(math.dist(a, a0), rel=1e-12)
        assert values["W_max_abs"] == max(abs(x) for x in dW) > 0


@pytest.mark.parametrize("options", [{}, {"dim": 5, "bias": False, "width": 12}])
def test_pattern_count_is_the_number_of_distinct_activation_columns(tmp_path, options):
    run = make_run(tmp_path, **options)
    X = run.problem["X"]
    for W, a in snapshots(run):
        columns = {tuple(X[i] @ W[:, r] > 0 for i in range(X.shape[0])) for r in range(W.shape[1])}
        assert indicators.Patterns().per_snapshot(run, W, a) == {"n_distinct": len(columns)}


def test_activation_points_inside_the_data_range_by_hand(run):
    x = run.problem["X"][:, 0]
    ind = indicators.ActivationPoints()
    for W, a in snapshots(run):
        kinks = [-W[1, r] / W[0, r] if W[0, r] != 0 else math.inf for r in range(W.shape[1])]
        inside = sum(x.min() <= k <= x.max() for k in kinks)
        assert ind.per_snapshot(run, W, a) == {"n_inside": inside}
    summary = ind.summary(run)
    assert summary == {"n_inside": inside, "min": min(kinks), "max": max(kinks)}


def test_summaries_are_the_last_snapshot_values(run):
    W, a = snapshots(run)[-1]
    for cls in (indicators.NeuronNorms, indicators.DistanceFromInit, indicators.Patterns):
        assert cls().summary(run) == cls().per_snapshot(run, W, a)
