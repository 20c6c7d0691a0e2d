"""Indicator plugins against hand computations from the snapshot arrays.

Their agreement with the live metrics of the same quantities: tests/plugins/test_metrics.py.
"""

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
        assert values["train_loss"] == model.loss(X, Y, W, a) == logged[step]
        X_test, Y_test = run.problem["X_test"], run.problem["Y_test"]
        assert values["test_loss"] == model.loss(X_test, Y_test, W, a)


def test_loss_per_snapshot_has_no_test_loss_without_a_test_set(run):
    W, a = snapshots(run)[-1]
    assert list(indicators.Loss().per_snapshot(run, W, a)) == ["train_loss"]


def test_loss_per_snapshot_uses_the_run_scaling(tmp_path):
    run = make_run(tmp_path, scaling="mean_field", width=5)
    X, Y = run.problem["X"], run.problem["Y"]
    W, a = snapshots(run)[-1]
    f = [sum(a[r] * max(X[i] @ W[:, r], 0.0) for r in range(5)) / 5 for i in range(len(X))]
    by_hand = sum((f[i] - Y[i]) ** 2 for i in range(len(X))) / len(X)
    got = indicators.Loss().per_snapshot(run, W, a)["train_loss"]
    assert got == pytest.approx(by_hand, rel=1e-12) and got != model.loss(X, Y, W, a)


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
        assert values["neuron_norm_mean"] == pytest.approx(sum(norms) / len(norms), rel=1e-12)
        assert values["neuron_norm_max"] == pytest.approx(max(norms), rel=1e-12)
        assert values["neuron_norm_sum"] == pytest.approx(sum(norms), rel=1e-12)


def test_distance_from_init_is_zero_at_snapshot_zero_then_by_hand(run):
    ind = indicators.DistanceFromInit()
    W0, a0 = run.problem["W0"], run.problem["a0"]
    (first, *rest) = snapshots(run)
    assert ind.per_snapshot(run, *first) == {"dist_W": 0.0, "dist_a": 0.0, "dist_W_max": 0.0}
    for W, a in rest:
        dW = [W[i, r] - W0[i, r] for i in range(W.shape[0]) for r in range(W.shape[1])]
        values = ind.per_snapshot(run, W, a)
        assert values["dist_W"] == pytest.approx(math.sqrt(sum(x * x for x in dW)), rel=1e-12)
        assert values["dist_a"] == pytest.approx(math.dist(a, a0), rel=1e-12)
        assert values["dist_W_max"] == max(abs(x) for x in dW) > 0


@pytest.mark.parametrize("options", [{}, {"dim": 5, "bias": False, "width": 12}])
def test_pattern_count_is_the_number_of_distinct_activation_columns(tmp_path, options):
    run = make_run(tmp_path, **options)
    X = run.problem["X"]
    for W, a in snapshots(run):
        columns = {tuple(X[i] @ W[:, r] > 0 for i in range(X.shape[0])) for r in range(W.shape[1])}
        assert indicators.Patterns().per_snapshot(run, W, a) == {"n_patterns": len(columns)}


def test_activation_points_inside_the_data_range_by_hand(run):
    x = run.problem["X"][:, 0]
    ind = indicators.ActivationPoints()
    for W, a in snapshots(run):
        kinks = [-W[1, r] / W[0, r] if W[0, r] != 0 else math.inf for r in range(W.shape[1])]
        inside = sum(x.min() <= k <= x.max() for k in kinks)
        assert ind.per_snapshot(run, W, a) == {"kinks_inside": inside}
    summary = ind.summary(run)
    assert summary == {"kinks_inside": inside, "kink_min": min(kinks), "kink_max": max(kinks)}


def test_summaries_are_the_last_snapshot_values(run):
    W, a = snapshots(run)[-1]
    for cls in (indicators.NeuronNorms, indicators.DistanceFromInit, indicators.Patterns):
        assert cls().summary(run) == cls().per_snapshot(run, W, a)
