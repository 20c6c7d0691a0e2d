"""Plots of a saved run: loss curve, neurons in the plane, their trajectories, the fit.

Every plot builds :class:`matplotlib.figure.Figure` objects on the Agg canvas, outside
pyplot's global state; :func:`core.analysis.draw_plots` collects them and ``plot.py``
saves them as ``RUN/plots/<stem>.png`` (:func:`core.analysis.save_figures`) or shows them.

In the neuron plane a neuron ``r`` is the point ``w_r`` (a column of ``W``, ``d == 2``):
for 1-D inputs with a bias it is ``(w_r, b_r)``, and neuron ``r`` has its kink at
``x = -b_r / w_r``. Colour is the sign of the output weight ``a_r`` (single output only).
"""

import numpy as np

from core import model
from core.analysis import has_bias
from core.components import Plot
from core.figures import (
    NEGATIVE,
    POSITIVE,
    abs_sizes,
    input_grid,
    new_figure,
    plane_labels,
    single_output,
)
from core.figures import signs as _signs
from core.hookspecs import hookimpl

__all__ = [
    "LossCurve",
    "Neurons",
    "Trajectories",
    "Fit",
    "new_figure",
    "mass_sizes",
    "POSITIVE",
    "NEGATIVE",
]

MASS_AREA = 60.0
"""Marker area (points^2) of the largest mass in the ``neurons`` figure of a measure run."""


def _title(run):
    return f"{run.meta.get('experiment', '')}  {run.path.name}".strip()


def _has_network(run):
    snaps = run.snapshots
    return len(snaps) > 0 and "W" in snaps and "a" in snaps


_single_output = single_output


def _plane_applies(run):
    """Snapshots hold ``W`` of shape (S, 2, m) and one output weight per neuron."""
    if not _has_network(run):
        return False
    W, a = run.snapshots["W"], run.snapshots["a"]
    return W.ndim == 3 and W.shape[1] == 2 and (a.ndim == 2 or (a.ndim == 3 and a.shape[2] == 1))


def _plane_labels(run):
    return plane_labels(has_bias(run))


_sizes = abs_sizes


def mass_sizes(p, top, largest=MASS_AREA):
    """Marker areas proportional to the masses ``p`` (``top`` gets ``largest``).

    Examples
    --------
    >>> mass_sizes(np.array([0.0, 0.5, 2.0]), 2.0).tolist()
    [0.0, 15.0, 60.0]
    """
    return largest * np.asarray(p, dtype=float) / (top or 1.0)


class LossCurve(Plot):
    """Training loss (and test loss when logged) over steps, log scale."""

    name = "loss"

    def applies(self, run):
        scalars = run.scalars
        return "step" in scalars and len(scalars.get("loss", ())) > 0

    def draw(self, run):
        scalars = run.scalars
        steps = np.asarray(scalars["step"])
        fig = new_figure()
        ax = fig.add_subplot()
        positive = False
        for key, label in (("loss", "train"), ("test_loss", "test")):
            if key not in scalars:
                continue
            values = np.asarray(scalars[key], dtype=float)
            keep = np.isfinite(values)
            if keep.any():
                ax.plot(steps[keep], values[keep], label=label)
                positive |= bool((values[keep] > 0).any())
        if positive:
            ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.set_title(_title(run), fontsize="small")
        ax.legend()
        return {"loss": fig}


class Neurons(Plot):
    """Final neurons as points in the plane (size ~ |a_r|, colour = sign), initial faded.

    A measure-valued run (its snapshots hold the masses ``p`` of fixed positions, as
    ``jko``'s do) draws instead one panel per sign: every position with a marker whose
    area is proportional to its final mass and whose colour is that mass (scale over
    the panel's range, so small variations around a uniform mass show). How the mass
    moved over time is the ``jko_mass`` figure's job.
    """

    name = "neurons"

    def applies(self, run):
        return _plane_applies(run)

    def draw(self, run):
        if "p" in run.snapshots:
            return {"neurons": self._draw_masses(run)}
        W0, a0 = np.asarray(run.problem["W0"]), _single_output(run.problem["a0"], 1)
        final = run.snapshots.at(-1)
        W, a = final["W"], _single_output(final["a"], 1)
        top = max(np.abs(a0).max(initial=0.0), np.abs(a).max(initial=0.0)) or 1.0
        fig = new_figure((5.5, 5.0))
        ax = fig.add_subplot()
        for W_, a_, alpha, when in ((W0, a0, 0.2, "initial"), (W, a, 0.85, "final")):
            for sign, colour in ((1, POSITIVE), (-1, NEGATIVE)):
                pick = (a_ >= 0) if sign > 0 else (a_ < 0)
                ax.scatter(
                    W_[0, pick],
                    W_[1, pick],
                    s=_sizes(a_[pick], top),
                    c=colour,
                    alpha=alpha,
                    linewidths=0,
                    label=f"{when}, $a_r {'>' if sign > 0 else '<'} 0$",
                )
        _finish_plane(ax, run, f"neurons at step {int(run.snapshots.steps[-1])}")
        return {"neurons": fig}

    def _draw_masses(self, run):
        final = run.snapshots.at(-1)
        W, p = np.asarray(final["W"]), np.asarray(final["p"], dtype=float)
        positive = _single_output(final["a"], 1) >= 0
        top = float(p.max(initial=0.0)) or 1.0
        xlabel, ylabel = _plane_labels(run)
        fig = new_figure((10.0, 4.8))
        axes = fig.subplots(1, 2, sharex=True, sharey=True)
        step = int(run.snapshots.steps[-1])
        for ax, pick, label, cmap in (
            (axes[0], positive, "positive", "Reds"),
            (axes[1], ~positive, "negative", "Blues"),
        ):
            mass = p[pick]
            dots = ax.scatter(
                W[0, pick],
                W[1, pick],
                s=mass_sizes(mass, top),
                c=mass,
                cmap=cmap,
                linewidths=0,
            )
            if mass.size:
                fig.colorbar(dots, ax=ax, shrink=0.85, label=f"{label} mass")
            ax.axhline(0, color="0.8", linewidth=0.5, zorder=0)
            ax.axvline(0, color="0.8", linewidth=0.5, zorder=0)
            ax.set_xlabel(xlabel)
            ax.set_title(f"{label} mass {mass.sum():.4g}", fontsize="small")
            ax.set_aspect("equal", adjustable="box")
        axes[0].set_ylabel(ylabel)
        fig.suptitle(
            f"{_title(run)}\nmass at step {step} (marker area and colour ~ mass)",
            fontsize="small",
        )
        return fig


class Trajectories(Plot):
    """Path of every neuron in the plane over the snapshots, coloured by the sign of a_r.

    Not for a measure-valued run whose positions never move (``jko``'s grid): its
    masses move instead (``neurons``, ``jko_mass``).
    """

    name = "trajectories"

    def applies(self, run):
        if not (_plane_applies(run) and len(run.snapshots) >= 2):
            return False
        W = run.snapshots["W"]
        return "p" not in run.snapshots or not np.array_equal(W[0], W[-1])

    def draw(self, run):
        from matplotlib.collections import LineCollection
        from matplotlib.lines import Line2D

        snaps = run.snapshots
        W = np.asarray(snaps["W"])  # (S, 2, m)
        a = _single_output(snaps["a"], 2)  # (S, m)
        points = W.transpose(2, 0, 1)  # (m, S, 2)
        segments = np.stack([points[:, :-1], points[:, 1:]], axis=2).reshape(-1, 2, 2)
        colours = _signs(a[1:].T).reshape(-1)  # segment coloured by the sign at its end
        fig = new_figure((5.5, 5.0))
        ax = fig.add_subplot()
        ax.add_collection(LineCollection(segments, colors=colours, linewidths=0.8, alpha=0.6))
        ax.scatter(W[0, 0], W[0, 1], s=4, c=_signs(a[0]), alpha=0.3, linewidths=0)
        ax.scatter(W[-1, 0], W[-1, 1], s=10, c=_signs(a[-1]), linewidths=0)
        ax.autoscale_view()
        handles = [
            Line2D([], [], color=POSITIVE, label="$a_r > 0$"),
            Line2D([], [], color=NEGATIVE, label="$a_r < 0$"),
            Line2D([], [], ls="", marker="o", ms=2.5, color="0.5", alpha=0.4, label="start"),
            Line2D([], [], ls="", marker="o", ms=3.5, color="0.3", label="end"),
        ]
        steps = snaps.steps
        what = f"trajectories, steps {int(steps[0])} to {int(steps[-1])}"
        _finish_plane(ax, run, what, handles)
        return {"trajectories": fig}


def _finish_plane(ax, run, what, handles=None):
    """Axes lines at 0, labels, equal aspect, title and legend of a neuron-plane plot."""
    xlabel, ylabel = _plane_labels(run)
    ax.axhline(0, color="0.8", linewidth=0.5, zorder=0)
    ax.axvline(0, color="0.8", linewidth=0.5, zorder=0)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_title(f"{_title(run)}\n{what}", fontsize="small")
    if handles is not None:
        ax.legend(handles=handles, fontsize="small")
        return
    legend = ax.legend(fontsize="small")
    for handle in legend.legend_handles:
        handle.set_sizes([25])  # one marker size in the legend, whatever |a_r|


class Fit(Plot):
    """Data and the network function f(x) on a fine grid at the first and last snapshot.

    For 1-D inputs (``d == 2`` with a bias, or ``d == 1`` without); every output is
    drawn. ``f`` is :func:`core.model.forward` with the run's output scaling.
    """

    name = "fit"
    n_grid = 400

    def applies(self, run):
        if not _has_network(run):
            return False
        d = run.problem["X"].shape[1]
        return d - int(has_bias(run)) == 1 and run.snapshots["W"].shape[1] == d

    def grid(self, run):
        """Inputs of the curve: the data range widened by 10 % on each side.

        Returns
        -------
        x : ndarray, shape (n_grid,)
        X : ndarray, shape (n_grid, d)
            ``x`` with the bias column appended when the run has one.
        """
        return input_grid(run.problem["X"][:, 0], has_bias(run), self.n_grid)

    def draw(self, run):
        problem, snaps = run.problem, run.snapshots
        scaling = run.config["model"]["scaling"]
        grid, G = self.grid(run)
        fig = new_figure()
        ax = fig.add_subplot()
        n = problem["X"].shape[0]
        Y = np.asarray(problem["Y"]).reshape(n, -1)
        k = Y.shape[1]
        for j in range(k):
            suffix = f" (output {j})" if k > 1 else ""
            ax.scatter(
                problem["X"][:, 0], Y[:, j], s=12, color=f"C{j}", zorder=3, label=f"data{suffix}"
            )
            if "X_test" in problem:
                Y_test = np.asarray(problem["Y_test"]).reshape(len(problem["X_test"]), -1)
                ax.scatter(
                    problem["X_test"][:, 0],
                    Y_test[:, j],
                    s=12,
                    marker="x",
                    color=f"C{j}",
                    alpha=0.6,
                    label=f"test data{suffix}",
                )
        first = [0] if len(snaps) == 1 else [0, len(snaps) - 1]
        for i in first:
            f = model.forward(G, snaps["W"][i], snaps["a"][i], scaling).reshape(len(grid), -1)
            last = i == len(snaps) - 1
            for j in range(k):
                ax.plot(
                    grid,
                    f[:, j],
                    color=f"C{j}",
                    linestyle="-" if last else "--",
                    alpha=1.0 if last else 0.6,
                    label=f"$f$ at step {int(snaps.steps[i])}" if j == 0 else None,
                )
        ax.set_xlabel("$x$")
        ax.set_ylabel("$y$")
        ax.set_title(_title(run), fontsize="small")
        ax.legend(fontsize="small")
        return {"fit": fig}


@hookimpl
def relulab_plots():
    return [LossCurve, Neurons, Trajectories, Fit]
