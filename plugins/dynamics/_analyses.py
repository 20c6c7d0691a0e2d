"""Sweep analyses of the training-dynamics experiments.

``ntk_width``
    For a sweep over ``model.width`` whose runs log ``neuron_shift_max`` (metric
    ``neuron_shift``; ``configs/du_width.py``): the loss relative to its start per
    width with Du et al.'s bound ``exp(-lambda_0 eta t)`` from the computed
    ``lambda_0`` (figure ``ntk_loss``), the largest neuron move over training and
    at the end against ``m`` with its fitted slope (``ntk_shift``; ``-1/2`` in the
    NTK regime), the fraction of activation-pattern entries changed
    (``ntk_patterns``, when ``hamming_init_frac`` is logged); tables
    ``ntk_width.csv`` (one row per width) and ``ntk_width.json`` (slope, lambda_0).
``corner_grid``
    For a sweep whose runs log ``corners`` (metric ``corners``;
    ``configs/overparam_grid.py``): per cell the success fraction, mean final loss
    and mean final corner count (``corner_grid.csv``), and a heat map of the mean
    corner count over the first two swept grid keys (``sweep_corners``, one per
    combination of the other swept values).
"""

import json
import math
import re

import numpy as np

from core import model, quantities
from core.components import SweepAnalysis
from plugins.sweep_analyses import curve_stats

__all__ = ["NtkWidth", "CornerGrid", "final_value", "fit_slope"]

WIDTH = "model.width"


class _Column:
    """A stand-in for a run with one derived scalar column (for :func:`curve_stats`)."""

    def __init__(self, steps, values):
        self.scalars = {"step": np.asarray(steps), "value": np.asarray(values, dtype=float)}


def final_value(run, key):
    """The last logged value of scalar ``key`` in ``run`` (NaN when absent)."""
    column = run.scalars.get(key)
    return float(column[-1]) if column is not None and len(column) else math.nan


def fit_slope(x, y):
    """Least-squares slope of ``log y`` against ``log x`` over the positive finite pairs.

    Examples
    --------
    >>> round(fit_slope([1.0, 4.0, 16.0], [2.0, 1.0, 0.5]), 12)
    -0.5
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    if keep.sum() < 2:
        return math.nan
    return float(np.polyfit(np.log(x[keep]), np.log(y[keep]), 1)[0])


def _band(ax, runs_columns, label):
    steps, mean, low, high, _ = curve_stats(runs_columns, "value")
    if not len(steps):
        return None
    line = ax.plot(steps, mean, label=label)[0]
    if len(runs_columns) > 1:
        ax.fill_between(steps, low, high, color=line.get_color(), alpha=0.2, lw=0)
    return line


class NtkWidth(SweepAnalysis):
    """Loss against Du et al.'s exp(-lambda_0 eta t), neuron moves against 1/sqrt(m), per width."""

    name = "ntk_width"

    def applies(self, sweep):
        if WIDTH not in sweep.keys:
            return False
        runs = sweep.runs()
        return bool(runs) and "neuron_shift_max" in runs[0][1].scalars

    def _cells(self, sweep):
        """``[(width, label, runs)]`` sorted by width."""
        cells = [(values[WIDTH], sweep.label(values), runs) for values, runs in sweep.cells()]
        return sorted(cells, key=lambda c: (c[0], c[1]))

    def _lambda_0(self, sweep):
        """Smallest ``lambda_0`` over the distinct training sets of the sweep's runs."""
        seen = {}
        for _, run in sweep.runs():
            X = np.asarray(run.problem["X"])
            key = (X.shape, hash(X.tobytes()))
            if key not in seen:
                seen[key] = quantities.lambda_0(X)
        return min(seen.values()) if seen else math.nan

    def _bound(self, sweep):
        """``(lambda_0, rate, note)``: the bound's decay rate per step, or None and why."""
        config = sweep.config
        algorithm, model_cfg = config["algorithm"], config["model"]
        if model_cfg.get("scaling") != "ntk":
            return None, None, "no bound drawn: the theorem is for scaling='ntk'"
        if algorithm.get("optimizer", "sgd") != "sgd" or algorithm.get("weight_decay", 0.0):
            return None, None, "no bound drawn: the theorem is for plain gradient descent"
        lam0 = self._lambda_0(sweep)
        run = sweep.runs()[0][1]
        Y = np.asarray(run.problem["Y"])
        k = 1 if Y.ndim == 1 else Y.shape[1]
        c = model.loss_factor(Y.shape[0], k, model_cfg.get("loss", "mse"))
        # d||r||^2/dt = -4 c r^T H r and lambda_min(H(t)) >= lambda_0 / 2 (their Theorem 3.1)
        return lam0, 2.0 * c * lam0 * float(algorithm["lr"]), None

    def tables(self, sweep):
        rows, widths, shifts = [], [], []
        for width, label, runs in self._cells(sweep):
            finals = [final_value(r, "neuron_shift_max") for r in runs]
            losses = [final_value(r, "loss") for r in runs]
            shift = float(np.nanmean(finals)) if np.isfinite(finals).any() else math.nan
            rows.append(
                {
                    "cell": label,
                    "width": width,
                    "runs": len(runs),
                    "final_loss_mean": float(np.nanmean(losses)),
                    "shift_max_final_mean": shift,
                    "shift_max_times_sqrt_m": shift * math.sqrt(width),
                    "live_neurons_final_mean": float(
                        np.nanmean([final_value(r, "live_neurons") for r in runs])
                    )
                    if "live_neurons" in runs[0].scalars
                    else math.nan,
                }
            )
            widths.append(width)
            shifts.append(shift)
        lam0, rate, note = self._bound(sweep)
        summary = {
            "shift_slope": fit_slope(widths, shifts),
            "lambda_0_min": self._lambda_0(sweep) if lam0 is None else lam0,
            "bound_rate_per_step": rate,
            "note": note,
        }
        return {"ntk_width.csv": rows, "ntk_width.json": summary}

    def draw(self, sweep):
        from matplotlib.figure import Figure

        cells = self._cells(sweep)
        lam0, rate, note = self._bound(sweep)
        figures = {}

        fig = Figure(figsize=(6.5, 4.5), layout="constrained")
        ax = fig.add_subplot()
        last = 0
        for _, label, runs in cells:
            columns = []
            for run in runs:
                steps, loss = run.scalars["step"], np.asarray(run.scalars["loss"], dtype=float)
                if len(loss) and loss[0] > 0:
                    columns.append(_Column(steps, loss / loss[0]))
                    last = max(last, int(steps[-1]))
            _band(ax, columns, f"{label} ({len(runs)})")
        if rate is not None and last:
            t = np.linspace(0, last, 200)
            ax.plot(t, np.exp(-rate * t), "k--", label=f"exp(-lambda_0 eta t), lambda_0={lam0:.4g}")
            ax.plot(t, np.exp(-2 * rate * t), "k:", label="exp(-2 lambda_0 eta t)")
        ax.set_yscale("log")
        ax.set_xlabel("step t")
        ax.set_ylabel("loss(t) / loss(0)")
        title = "training loss per width: mean over seeds, band min to max"
        ax.set_title(title if note is None else f"{title}\n{note}", fontsize=9)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
        figures["ntk_loss"] = fig

        fig = Figure(figsize=(11, 4.5), layout="constrained")
        left, right = fig.subplots(1, 2)
        widths, means, lows, highs = [], [], [], []
        for width, label, runs in cells:
            _band(
                left,
                [_Column(r.scalars["step"], r.scalars["neuron_shift_max"]) for r in runs],
                f"{label} ({len(runs)})",
            )
            finals = np.array([final_value(r, "neuron_shift_max") for r in runs])
            finals = finals[np.isfinite(finals)]
            if len(finals):
                widths.append(width)
                means.append(finals.mean())
                lows.append(finals.min())
                highs.append(finals.max())
        left.set_xlabel("step t")
        left.set_ylabel("max_r ||w_r(t) - w_r(0)||")
        left.set_title("largest neuron move per width", fontsize=9)
        left.legend(fontsize=7)
        left.grid(alpha=0.3)
        if widths:
            w, mu = np.array(widths, dtype=float), np.array(means)
            err = np.array([mu - np.array(lows), np.array(highs) - mu])
            right.errorbar(w, mu, yerr=err, marker="o", capsize=3, label="final, mean (min-max)")
            right.plot(w, mu[0] * np.sqrt(w[0] / w), "k--", label="reference m^(-1/2)")
            right.set_xscale("log")
            right.set_yscale("log")
            right.set_xticks(w, [f"{x:g}" for x in w], minor=False)
            right.xaxis.set_minor_formatter("")
            right.set_title(
                f"final largest move vs width: slope {fit_slope(w, mu):.3f}", fontsize=9
            )
            right.legend(fontsize=7)
        right.set_xlabel("width m")
        right.set_ylabel("max_r ||w_r(T) - w_r(0)||")
        right.grid(alpha=0.3, which="both")
        figures["ntk_shift"] = fig

        if any("hamming_init_frac" in r.scalars for _, _, runs in cells for r in runs):
            fig = Figure(figsize=(6.5, 4.5), layout="constrained")
            ax = fig.add_subplot()
            for _, label, runs in cells:
                columns = [
                    _Column(r.scalars["step"], r.scalars["hamming_init_frac"])
                    for r in runs
                    if "hamming_init_frac" in r.scalars
                ]
                _band(ax, columns, f"{label} ({len(runs)})")
            ax.set_xlabel("step t")
            ax.set_ylabel("fraction of pattern entries 1[w_r . x_i > 0] changed")
            ax.set_title("activation patterns changed since initialisation", fontsize=9)
            ax.legend(fontsize=7)
            ax.grid(alpha=0.3)
            figures["ntk_patterns"] = fig
        return figures


class CornerGrid(SweepAnalysis):
    """Per cell: success fraction, mean final loss and corner count (CSV, corner heat map)."""

    name = "corner_grid"

    def applies(self, sweep):
        runs = sweep.runs()
        return bool(runs) and "corners" in runs[0][1].scalars

    def _cell_rows(self, sweep):
        groups = {json.dumps([g[k] for k in sweep.keys]): g for g in sweep.groups}
        rows = []
        for values, runs in sweep.cells():
            group = groups.get(json.dumps([values[k] for k in sweep.keys]), {})
            corners = np.array([final_value(r, "corners") for r in runs])
            corners = corners[np.isfinite(corners)]
            rows.append(
                {
                    **values,
                    "runs": len(runs),
                    "success": group.get("success", math.nan),
                    "final_loss_mean": group.get("final_loss_mean", math.nan),
                    "final_loss_std": group.get("final_loss_std", math.nan),
                    "corners_mean": float(corners.mean()) if len(corners) else math.nan,
                    "corners_std": float(corners.std(ddof=1)) if len(corners) > 1 else math.nan,
                }
            )
        return rows

    def tables(self, sweep):
        return {"corner_grid.csv": self._cell_rows(sweep)}

    def draw(self, sweep):
        from matplotlib.figure import Figure

        grid = sweep.spec["grid"]
        axes_keys = [k for k, v in grid.items() if len(v) > 1][:2]
        if len(axes_keys) < 2:
            return {}
        key_y, key_x = axes_keys
        others = [k for k in sweep.keys if k not in axes_keys]
        rows = self._cell_rows(sweep)
        combos = {}
        for row in rows:
            combos.setdefault(tuple((k, row[k]) for k in others), []).append(row)
        figures = {}
        for combo, members in combos.items():
            at = {(r[key_y], r[key_x]): r["corners_mean"] for r in members}
            ys, xs = grid[key_y], grid[key_x]
            Z = np.array([[at.get((y, x), math.nan) for x in xs] for y in ys], dtype=float)
            fig = Figure(
                figsize=(2 + 0.45 * len(xs) + 2, 1.5 + 0.4 * len(ys)), layout="constrained"
            )
            ax = fig.add_subplot()
            image = ax.imshow(np.ma.masked_invalid(Z), origin="lower", aspect="auto")
            ax.set_xticks(range(len(xs)), [str(x) for x in xs], rotation=45 if len(xs) > 8 else 0)
            ax.set_yticks(range(len(ys)), [str(y) for y in ys])
            ax.set_xlabel(key_x)
            ax.set_ylabel(key_y)
            if Z.size <= 144:
                for (i, j), z in np.ndenumerate(Z):
                    if math.isfinite(z):
                        r, g, b, _ = image.cmap(image.norm(z))
                        color = "k" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "w"
                        ax.text(j, i, f"{z:.3g}", ha="center", va="center", fontsize=7, color=color)
            fig.colorbar(image, ax=ax, label="mean final corner count")
            where = ", ".join(f"{k}={v}" for k, v in combo)
            ax.set_title(
                "corners |x_i . w_r| < threshold at the end, mean over runs"
                + (f"\n{where}" if where else ""),
                fontsize=9,
            )
            suffix = "".join(f"_{k}={v}" for k, v in combo)
            figures[re.sub(r"[^A-Za-z0-9_.=+-]", "_", f"sweep_corners{suffix}")] = fig
        return figures
