"""Metrics a logger can compute from the current network."""

import numpy as np

from core import model
from core.components import Metric
from core.hookspecs import hookimpl


def _network(algorithm):
    state = algorithm.state()
    return np.asarray(state["W"], dtype=np.float64), np.asarray(state["a"], dtype=np.float64)


class DistanceFromInit(Metric):
    """Frobenius distances ||W - W0|| and ||a - a0|| from the initial network."""

    name = "distance_from_init"

    def compute(self, algorithm, problem):
        W, a = _network(algorithm)
        return {"dist_W": float(np.linalg.norm(W - problem.W0)),
                "dist_a": float(np.linalg.norm(a - problem.a0))}


class PatternCount(Metric):
    """Number of distinct neuron activation patterns on the training data."""

    name = "n_patterns"

    def compute(self, algorithm, problem):
        W, _ = _network(algorithm)
        return {"n_patterns": model.n_distinct_patterns(problem.X, W)}


class TestLoss(Metric):
    """Loss on the held-out data (NaN when the data set has none)."""

    name = "test_loss"

    def compute(self, algorithm, problem):
        if problem.X_test is None:
            return {"test_loss": float("nan")}
        W, a = _network(algorithm)
        return {"test_loss": model.loss(problem.X_test, problem.Y_test, W, a,
                                        problem.scaling, problem.loss)}


class NeuronNorms(Metric):
    """Mean and max of the neuron norms ||w_r|| * ||a_r||."""

    name = "neuron_norms"

    def compute(self, algorithm, problem):
        W, a = _network(algorithm)
        norms = np.linalg.norm(W, axis=0) * np.abs(a if a.ndim == 1 else np.linalg.norm(a, axis=1))
        return {"neuron_norm_mean": float(norms.mean()), "neuron_norm_max": float(norms.max())}


@hookimpl
def relulab_metrics():
    return [DistanceFromInit, PatternCount, TestLoss, NeuronNorms]
