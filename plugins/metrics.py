"""Metrics the ``scalars`` logger computes from the current network while a run trains.

Each wraps one function of :mod:`core.quantities`, as the indicator of the same
quantity does (:mod:`plugins.indicators`), so the trace column and the
``indicators.csv`` column hold the same number for the same network. Select them in
the config, by name or with parameters::

    "loggers": {"scalars": {"metrics": ["test_loss", "neuron_norms"]}}
    "loggers": {"scalars": {"metrics": {"n_patterns": {"data": "test"},
                                        "distance_from_init": {"relative": True}}}}
"""

from core import quantities
from core.components import Metric
from core.hookspecs import hookimpl
from core.params import Param

__all__ = ["DistanceFromInit", "PatternCount", "TestLoss", "NeuronNorms"]


def _network(algorithm):
    """``(W, a)`` of the algorithm's current state."""
    state = algorithm.state()
    return state["W"], state["a"]


class DistanceFromInit(Metric):
    """Distances from the initial network: dist_W (Frobenius), dist_a, dist_W_max."""

    name = "distance_from_init"
    params = (
        Param(
            "relative",
            bool,
            False,
            "divide by the initial network's size (||W0||_F, ||a0||, max |W0|)",
        ),
    )

    def compute(self, algorithm, problem):
        return quantities.distance_from_init(*_network(algorithm), problem, self.relative)


class PatternCount(Metric):
    """Number of distinct neuron activation patterns on the training or test data."""

    name = "n_patterns"
    params = (
        Param(
            "data",
            str,
            "train",
            "inputs the patterns are taken on (key n_patterns, or n_patterns_test)",
            choices=("train", "test"),
        ),
    )

    def compute(self, algorithm, problem):
        return quantities.n_patterns(*_network(algorithm), problem, self.data)


class TestLoss(Metric):
    """Loss on the held-out data (NaN when the data set has none)."""

    name = "test_loss"
    __test__ = False  # a metric, not a pytest test class

    def compute(self, algorithm, problem):
        return quantities.test_loss(*_network(algorithm), problem)


class NeuronNorms(Metric):
    """Mean, max and sum of the neuron sizes ||w_r|| |a_r|."""

    name = "neuron_norms"

    def compute(self, algorithm, problem):
        return quantities.neuron_norm_stats(*_network(algorithm), problem)


@hookimpl
def relulab_metrics():
    return [DistanceFromInit, PatternCount, TestLoss, NeuronNorms]
