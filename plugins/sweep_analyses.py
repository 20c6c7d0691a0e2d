"""Built-in sweep analyses (``sweep_analysis`` plugins): what a sweep shows beyond its cells.

``curves``
    Every logged scalar over steps, one curve per cell of swept values: the mean
    over the cell's finished runs with a band from the smallest to the largest
    run, so seeds of one setting read as one curve with its spread. Written as
    ``curves.csv`` (long format: cell, key, step, mean, geomean, min, max, count)
    and drawn as ``sweep_curves_<key>.png``. A scalar whose values are positive and
    span more than two decades is drawn on a log axis with the geometric mean (the
    mean of the logs), so the curve follows the typical run rather than the largest.
"""

import numpy as np

from core.components import SweepAnalysis
from core.hookspecs import hookimpl

__all__ = ["Curves", "curve_stats"]

_NOT_CURVES = ("step", "elapsed")
MAX_KEYS = 12
"""At most this many scalars are drawn (the loss first, then in logged order)."""


def curve_stats(runs, key, geometric=False):
    """Mean, min and max of one scalar over runs, aligned on the logged steps.

    Parameters
    ----------
    runs : list of core.store.Run
    key : str
        A column of the runs' ``scalars`` stream.
    geometric : bool
        Return the geometric mean ``exp(mean(log v))`` instead of the arithmetic
        one (NaN at a step where a contributing value is not positive).

    Returns
    -------
    steps : ndarray of int, shape (s,)
        Every step at which at least one run logged ``key``, sorted.
    mean, low, high : ndarray, shape (s,)
        Mean, minimum and maximum over the runs with a finite value at that step
        (NaN where none has one).
    count : ndarray of int, shape (s,)
        How many runs contributed at each step.

    Examples
    --------
    >>> class R:
    ...     def __init__(self, s, v):
    ...         self.scalars = {"step": np.array(s), "loss": np.array(v)}
    >>> steps, mean, low, high, count = curve_stats([R([0, 1], [2.0, 1.0]), R([0], [4.0])], "loss")
    >>> steps.tolist(), mean.tolist(), low.tolist(), high.tolist(), count.tolist()
    ([0, 1], [3.0, 1.0], [2.0, 1.0], [4.0, 1.0], [2, 1])
    >>> curve_stats([R([0], [1e-6]), R([0], [1e-2])], "loss", geometric=True)[1].round(12).tolist()
    [0.0001]
    """
    columns = [(r.scalars["step"], r.scalars[key]) for r in runs if key in r.scalars]
    if not columns:
        empty = np.array([])
        return np.array([], dtype=int), empty, empty, empty, np.array([], dtype=int)
    steps = np.unique(np.concatenate([s for s, _ in columns]))
    table = np.full((len(columns), len(steps)), np.nan)
    for i, (s, v) in enumerate(columns):
        table[i, np.searchsorted(steps, s)] = np.asarray(v, dtype=float)
    finite = np.isfinite(table)
    count = finite.sum(axis=0)
    none = count == 0
    if geometric:
        positive = np.where(finite, table, 1.0) > 0
        logs = np.log(np.where(finite & positive, table, 1.0))
        mean = np.exp(logs.sum(axis=0) / np.maximum(count, 1))
        mean[~positive.all(axis=0)] = np.nan
    else:
        mean = np.where(finite, table, 0.0).sum(axis=0) / np.maximum(count, 1)
    low = np.where(finite, table, np.inf).min(axis=0)
    high = np.where(finite, table, -np.inf).max(axis=0)
    mean[none] = low[none] = high[none] = np.nan
    return steps.astype(int), mean, low, high, count


def _curve_keys(cells):
    keys = []
    for _, runs in cells:
        for run in runs:
            for key, column in run.scalars.items():
                numeric = np.issubdtype(np.asarray(column).dtype, np.number)
                if key not in _NOT_CURVES and key not in keys and numeric:
                    keys.append(key)
    keys.sort(key=lambda k: k != "loss")
    return keys[:MAX_KEYS]


class Curves(SweepAnalysis):
    """Each logged scalar over steps per cell: mean over seeds, min-max band."""

    name = "curves"

    def applies(self, sweep):
        return bool(sweep.runs())

    def _stats(self, sweep, geometric=False):
        cells = sweep.cells()
        for key in _curve_keys(cells):
            for values, runs in cells:
                yield key, values, runs, curve_stats(runs, key, geometric)

    def tables(self, sweep):
        rows = []
        pairs = zip(self._stats(sweep), self._stats(sweep, geometric=True))
        for (key, values, _, (steps, mean, low, high, count)), geo in pairs:
            cell = sweep.label(values)
            geomean = geo[3][1]
            for i, step in enumerate(steps):
                rows.append(
                    {
                        "cell": cell,
                        "key": key,
                        "step": int(step),
                        "mean": mean[i],
                        "geomean": geomean[i],
                        "min": low[i],
                        "max": high[i],
                        "count": int(count[i]),
                    }
                )
        return {"curves.csv": rows}

    def draw(self, sweep):
        from matplotlib.figure import Figure

        stats = list(self._stats(sweep, geometric=True))
        log_keys = set()
        for key in {s[0] for s in stats}:
            bands = [np.r_[low, high] for k, _, _, (_, _, low, high, _) in stats if k == key]
            data = np.concatenate(bands or [np.array([])])
            data = data[np.isfinite(data)]
            if len(data) and np.all(data > 0) and data.max() / data.min() > 100:
                log_keys.add(key)
        figures, axes = {}, {}
        for key, values, runs, (steps, geomean, low, high, _) in stats:
            mean = geomean
            if key not in log_keys:
                mean = curve_stats(runs, key)[1]
            if key not in axes:
                fig = Figure(figsize=(6.5, 4), layout="constrained")
                axes[key] = fig.add_subplot()
                figures[f"sweep_curves_{key}"] = fig
            ax = axes[key]
            if not len(steps):
                continue
            line = ax.plot(steps, mean, label=f"{sweep.label(values)} ({len(runs)})")[0]
            if len(runs) > 1:
                ax.fill_between(steps, low, high, color=line.get_color(), alpha=0.2, lw=0)
        for key, ax in axes.items():
            if key in log_keys:
                ax.set_yscale("log")
            steps = np.concatenate([ln.get_xdata() for ln in ax.get_lines()] or [np.array([])])
            if len(steps) and steps.min() > 0 and steps.max() / steps.min() > 100:
                ax.set_xscale("log")
            ax.set_xlabel("step")
            ax.set_ylabel(key)
            mean_name = "geometric mean" if key in log_keys else "mean"
            ax.set_title(
                f"{key}: {mean_name} over runs, band min to max (runs per cell)", fontsize=9
            )
            if len(ax.get_lines()) <= 12:
                ax.legend(fontsize=7)
            ax.grid(alpha=0.3)
        return figures


@hookimpl
def relulab_sweep_analyses():
    return [Curves]
