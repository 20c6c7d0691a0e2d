"""Indicators of a saved run: loss, neuron norms, distance from init, patterns, kinks.

``postprocess.py`` (:func:`postprocess.compute_indicators`) calls ``summary(run)`` once
and ``per_snapshot(run, W, a)`` for every parameter snapshot, and prefixes each key
with the indicator's name (``neuron_norms.mean``). Unless an indicator says otherwise,
its summary is its per-snapshot value at the last snapshot.
"""

import numpy as np

from core import model
from core.components import Indicator
from core.hookspecs import hookimpl

__all__ = [
    "Loss",
    "NeuronNorms",
    "DistanceFromInit",
    "Patterns",
    "ActivationPoints",
    "neuron_norms",
    "activation_points",
]


def neuron_norms(W, a):
    """Size of each neuron, ``||w_r|| |a_r|`` (``||a_r||`` for several outputs).

    Parameters
    ----------
    W : ndarray, shape (d, m)
    a : ndarray, shape (m,) or (m, k)

    Returns
    -------
    norms : ndarray, shape (m,)
    """
    a = np.asarray(a)
    size_a = np.abs(a) if a.ndim == 1 else np.linalg.norm(a, axis=1)
    return np.linalg.norm(W, axis=0) * size_a


def activation_points(W):
    """Kink of each neuron for 1-D inputs with a bias: ``x_r = -b_r / w_r``.

    Neuron ``r`` computes ``relu(w_r x + b_r)`` with ``(w_r, b_r) = W[:, r]``; its
    activation changes at ``x_r``. A neuron with ``w_r = 0`` has no kink: ``inf``.

    Parameters
    ----------
    W : ndarray, shape (2, m)

    Returns
    -------
    x : ndarray, shape (m,)

    Examples
    --------
    >>> activation_points(np.array([[2.0, 0.0], [1.0, 1.0]]))
    array([-0.5,  inf])
    """
    w, b = np.asarray(W[0], dtype=float), np.asarray(W[1], dtype=float)
    out = np.full(w.shape, np.inf)
    np.divide(-b, w, out=out, where=w != 0)
    return out


def _has_bias(run):
    flag = run.problem.get("bias")
    return bool(flag) if flag is not None else run.bias


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

    Per snapshot: the training loss (and test loss when the data has a test set)
    recomputed from the snapshot with :func:`core.model.loss` and the run's model
    options.
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
        problem, options = run.problem, run.config["model"]
        kwargs = {"scaling": options["scaling"], "loss": options["loss"]}
        out = {"train": model.loss(problem["X"], problem["Y"], W, a, **kwargs)}
        if "X_test" in problem:
            out["test"] = model.loss(problem["X_test"], problem["Y_test"], W, a, **kwargs)
        return out


class NeuronNorms(_SnapshotIndicator):
    """Mean, max and sum of the neuron sizes ||w_r|| |a_r|."""

    name = "neuron_norms"

    def per_snapshot(self, run, W, a):
        norms = neuron_norms(W, a)
        return {"mean": float(norms.mean()), "max": float(norms.max()), "sum": float(norms.sum())}


class DistanceFromInit(_SnapshotIndicator):
    """Distance from the initial network: ||W - W0||_F, ||a - a0||, max |W - W0| entry."""

    name = "distance_from_init"

    def per_snapshot(self, run, W, a):
        W0, a0 = run.problem["W0"], run.problem["a0"]
        if W.shape != W0.shape or np.size(a) != np.size(a0):
            nan = float("nan")
            return {"W_fro": nan, "a_norm": nan, "W_max_abs": nan}
        dW = W - W0
        return {
            "W_fro": float(np.linalg.norm(dW)),
            "a_norm": float(np.linalg.norm(np.ravel(a) - np.ravel(a0))),
            "W_max_abs": float(np.abs(dW).max(initial=0.0)),
        }


class Patterns(_SnapshotIndicator):
    """Number of distinct neuron activation patterns on the training data."""

    name = "patterns"

    def per_snapshot(self, run, W, a):
        return {"n_distinct": model.n_distinct_patterns(run.problem["X"], W)}


class ActivationPoints(_SnapshotIndicator):
    """Kinks x_r = -b_r / w_r of the neurons (1-D inputs with a bias).

    Per snapshot: how many kinks lie in the data range ``[min x, max x]``. Summary (last
    snapshot): that count and the smallest and largest finite kink (None if none).
    """

    name = "activation_points"

    def applies(self, run):
        return (
            super().applies(run)
            and _has_bias(run)
            and run.problem["X"].shape[1] == 2
            and run.snapshots["W"].shape[1] == 2
        )

    def _range(self, run):
        x = run.problem["X"][:, 0]
        return float(x.min()), float(x.max())

    def per_snapshot(self, run, W, a):
        lo, hi = self._range(run)
        x = activation_points(W)
        return {"n_inside": int(np.count_nonzero((x >= lo) & (x <= hi)))}

    def summary(self, run):
        W = run.snapshots.at(-1)["W"]
        x = activation_points(W)
        finite = x[np.isfinite(x)]
        out = self.per_snapshot(run, W, None)
        out["min"] = float(finite.min()) if finite.size else None
        out["max"] = float(finite.max()) if finite.size else None
        return out


@hookimpl
def relulab_indicators():
    return [Loss, NeuronNorms, DistanceFromInit, Patterns, ActivationPoints]
