"""Indicators of a saved run: loss, neuron norms, distance from init, patterns, kinks.

:func:`core.analysis.compute_indicators` (``postprocess.py``) calls ``summary(run)``
once and ``per_snapshot(run, W, a)`` for every parameter snapshot, and prefixes each
key with the indicator's name (``neuron_norms.neuron_norm_mean``). Unless an indicator
says otherwise, its summary is its per-snapshot value at the last snapshot.

The per-snapshot values are the functions of :mod:`core.quantities` on the run's
saved problem (:func:`core.analysis.saved_problem`): the live metric of the same name
(:mod:`plugins.metrics`) gives the same keys and numbers for the same network.
"""

import numpy as np

from core import quantities
from core.analysis import has_bias, saved_problem
from core.components import Indicator
from core.hookspecs import hookimpl

__all__ = [
    "Loss",
    "NeuronNorms",
    "DistanceFromInit",
    "Patterns",
    "ActivationPoints",
]


class _SnapshotIndicator(Indicator):
    """An indicator of the network alone: applies to runs with ``W`` and ``a`` snapshots."""

    def applies(self, run):
        snaps = run.snapshots
        return len(snaps) > 0 and "W" in snaps and "a" in snaps

    def summary(self, run):
        final = run.snapshots.at(-1)
        return self.per_snapshot(run, final["W"], final["a"])


class Loss(Indicator):
    """Final and best training loss with its step, steps done, status and reason.

    Per snapshot: ``train_loss`` (and ``test_loss`` when the data has a test set)
    recomputed from the snapshot (:func:`core.quantities.train_loss`,
    :func:`core.quantities.test_loss`) with the run's model options.
    """

    name = "loss"

    def summary(self, run):
        meta, scalars = run.meta, run.scalars
        out = {"final": meta.get("final_loss"), "best": None, "best_step": None}
        values = np.asarray(scalars.get("loss", ()), dtype=float)
        if values.size:
            out["final"] = float(values[-1])
            finite = np.flatnonzero(np.isfinite(values))
            if finite.size:
                best = finite[np.argmin(values[finite])]
                out["best"] = float(values[best])
                out["best_step"] = int(scalars["step"][best])
        out.update(steps=meta.get("steps"), status=meta.get("status"), reason=meta.get("reason"))
        return out

    def per_snapshot(self, run, W, a):
        problem = saved_problem(run)
        out = quantities.train_loss(W, a, problem)
        if problem.X_test is not None:
            out.update(quantities.test_loss(W, a, problem))
        return out


class NeuronNorms(_SnapshotIndicator):
    """Mean, max and sum of the neuron sizes ||w_r|| |a_r|."""

    name = "neuron_norms"

    def per_snapshot(self, run, W, a):
        return quantities.neuron_norm_stats(W, a, saved_problem(run))


class DistanceFromInit(_SnapshotIndicator):
    """Distance from the initial network: dist_W (Frobenius), dist_a, dist_W_max."""

    name = "distance_from_init"

    def per_snapshot(self, run, W, a):
        return quantities.distance_from_init(W, a, saved_problem(run))


class Patterns(_SnapshotIndicator):
    """Number of distinct neuron activation patterns on the training data."""

    name = "patterns"

    def per_snapshot(self, run, W, a):
        return quantities.n_patterns(W, a, saved_problem(run))


class ActivationPoints(_SnapshotIndicator):
    """Kinks x_r = -b_r / w_r of the neurons (1-D inputs with a bias).

    Per snapshot: ``kinks_inside``, how many kinks lie in the data range
    ``[min x, max x]`` (:func:`core.quantities.kinks_inside`). Summary (last snapshot):
    that count and ``kink_min`` / ``kink_max``, the smallest and largest finite kink
    (None if none).
    """

    name = "activation_points"

    def applies(self, run):
        return (
            super().applies(run)
            and has_bias(run)
            and run.problem["X"].shape[1] == 2
            and run.snapshots["W"].shape[1] == 2
        )

    def per_snapshot(self, run, W, a):
        return quantities.kinks_inside(W, a, saved_problem(run))

    def summary(self, run):
        final = run.snapshots.at(-1)
        out = self.per_snapshot(run, final["W"], final["a"])
        kinks = quantities.activation_points(final["W"])
        finite = kinks[np.isfinite(kinks)]
        out["kink_min"] = float(finite.min()) if finite.size else None
        out["kink_max"] = float(finite.max()) if finite.size else None
        return out


@hookimpl
def relulab_indicators():
    return [Loss, NeuronNorms, DistanceFromInit, Patterns, ActivationPoints]
