"""Plot plugins ``jko_mass`` (the mass over the grid, per sign, at several steps)
and ``jko_convergence`` (loss, inner iterations and marginal violation per step).

One figure, ``jko_mass``: two rows (positive and negative mass) of heat maps over
the 2-D grid of positions (the (weight, bias) plane for 1-D inputs with a bias),
one column per chosen snapshot step (first, last and evenly spaced ones between).
Each row shares one colour scale, so mass moving and concentrating is visible. A
position repeated with both signs contributes to both rows; copies with the same
sign add up on their node.

matplotlib is imported when drawing only.
"""

import numpy as np

from core.components import Plot
from core.params import Param

from ._kernel import detect_grid

__all__ = ["JKOMass", "JKOConvergence", "mass_on_grid"]


def mass_on_grid(grid, p, select):
    """Sum the masses ``p[select]`` onto the grid nodes.

    Parameters
    ----------
    grid : Grid
        Grid of all positions (2-D).
    p : ndarray, shape (N,)
    select : ndarray of bool, shape (N,)

    Returns
    -------
    ndarray, shape grid.shape
    """
    total = np.bincount(grid.index[select], weights=p[select], minlength=grid.n_nodes)
    return total.reshape(grid.shape)


def _grid_of(run):
    snaps = run.snapshots
    W = snaps["W"][0] if len(snaps) and "W" in snaps else run.problem.get("W0")
    if W is None or W.ndim != 2 or W.shape[0] != 2:
        return None
    return detect_grid(W)


class JKOMass(Plot):
    """Heat maps of the positive and negative mass over the grid at several JKO steps."""

    name = "jko_mass"
    requires = ("matplotlib",)
    params = (Param("columns", int, 5, "number of snapshot steps shown", low=1),)

    def applies(self, run):
        """Snapshots hold the masses ``p`` (a measure algorithm such as ``jko``) on a 2-D grid."""
        snaps = run.snapshots
        if not len(snaps) or "p" not in snaps or "a" not in snaps:
            return False
        return _grid_of(run) is not None

    def draw(self, run):
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        snaps = run.snapshots
        grid = _grid_of(run)
        count = len(snaps)
        chosen = np.unique(np.linspace(0, count - 1, min(self.columns, count)).round().astype(int))
        P, A = snaps["p"], snaps["a"]
        A = A[..., 0] if A.ndim == 3 else A
        rows = (("positive", A[chosen[0]] >= 0), ("negative", A[chosen[0]] < 0))
        maps = {label: [mass_on_grid(grid, P[i], sel) for i in chosen] for label, sel in rows}
        (x0, x1), (y0, y1) = ((a[0], a[-1]) for a in grid.axes)
        bias = bool(run.problem.get("bias", run.meta.get("bias", False)))
        xlabel, ylabel = ("weight $w$", "bias $b$") if bias else ("$w_1$", "$w_2$")

        fig = Figure(figsize=(2.6 * len(chosen) + 1.2, 5.2), layout="constrained")
        FigureCanvasAgg(fig)
        axes = fig.subplots(2, len(chosen), squeeze=False, sharex=True, sharey=True)
        for r, (label, _) in enumerate(rows):
            vmax = max(float(m.max()) for m in maps[label]) or 1.0
            image = None
            for col, (i, mass) in enumerate(zip(chosen, maps[label])):
                ax = axes[r, col]
                image = ax.imshow(
                    mass.T,
                    origin="lower",
                    extent=(x0, x1, y0, y1),
                    aspect="auto",
                    cmap="Reds" if r == 0 else "Blues",
                    vmin=0.0,
                    vmax=vmax,
                    interpolation="nearest",
                )
                if r == 0:
                    ax.set_title(f"step {int(snaps.steps[i])}")
                if r == 1:
                    ax.set_xlabel(xlabel)
                if col == 0:
                    ax.set_ylabel(f"{label} mass\n{ylabel}")
            fig.colorbar(image, ax=axes[r, :].tolist(), shrink=0.9, label=f"{label} mass")
        fig.suptitle(f"JKO mass over the grid  {run.path.name}")
        return {"jko_mass": fig}


class JKOConvergence(Plot):
    """Loss per step with the inner solve beside it: iterations and marginal violation.

    One figure, ``jko_convergence``, three panels sharing the step axis: the loss
    (log scale), ``inner_iters`` (Newton or scaling iterations of each step) and
    ``violation`` (the relative marginal error the step ended with, log scale), so a
    step that stopped far from its tolerance shows next to the loss it produced.
    """

    name = "jko_convergence"
    requires = ("matplotlib",)

    def applies(self, run):
        scalars = run.scalars
        return all(k in scalars for k in ("step", "loss", "inner_iters", "violation"))

    def draw(self, run):
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        scalars = run.scalars
        steps = np.asarray(scalars["step"])
        keep = steps > 0  # step 0 has no inner solve
        fig = Figure(figsize=(6.0, 6.4), layout="constrained")
        FigureCanvasAgg(fig)
        axes = fig.subplots(3, 1, sharex=True)
        panels = (
            ("loss", "loss", True, np.ones_like(keep)),
            ("inner_iters", "inner iterations", False, keep),
            ("violation", "marginal violation", True, keep),
        )
        for ax, (key, label, log, mask) in zip(axes, panels):
            values = np.asarray(scalars[key], dtype=float)
            ok = mask & np.isfinite(values) & ((values > 0) if log else True)
            ax.plot(steps[ok], values[ok], marker="." if ok.sum() < 60 else None)
            if log and ok.any():
                ax.set_yscale("log")
            ax.set_ylabel(label)
        axes[-1].set_xlabel("step")
        fig.suptitle(f"JKO loss and inner solves  {run.path.name}", fontsize="small")
        return {"jko_convergence": fig}
