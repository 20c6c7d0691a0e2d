"""Plot plugin ``inner_loop``: every inner iteration of a proximal-point run.

One figure, ``inner_loop``: the inner objective ``J_k(W_i)`` and the distance
``D(W_i, W_k)`` of every recorded inner iteration, one after another across the
recorded outer steps, on a log scale (non-positive values, such as a zero distance,
are left out); the learning rate of each update on a twin axis (log scale); dotted
vertical lines where one outer step ends and the next begins. It applies to any run
whose ``records`` stream has ``objective``, ``distance`` and ``lr`` columns (the
``proxpoint`` algorithm's).

matplotlib is imported when drawing only.
"""

import numpy as np

from core.components import Plot
from plugins.plots import new_figure

__all__ = ["InnerLoop", "RECORD_COLUMNS"]

RECORD_COLUMNS = ("objective", "distance", "lr")
"""The records columns the plot needs."""


def _positive(values):
    """``values`` as floats with non-positive and non-finite entries replaced by NaN."""
    values = np.asarray(values, dtype=float)
    return np.where(np.isfinite(values) & (values > 0), values, np.nan)


class InnerLoop(Plot):
    """Inner objective and distance of every inner iteration (log), learning rate on a twin axis."""

    name = "inner_loop"
    requires = ("matplotlib",)

    def applies(self, run):
        """The run's records hold ``objective``, ``distance`` and ``lr`` rows."""
        records = run.records
        return all(key in records for key in RECORD_COLUMNS) and len(records["objective"]) > 0

    def draw(self, run):
        records = run.records
        steps = np.asarray(records["step"])
        x = np.arange(1, len(steps) + 1)
        fig = new_figure((7.0, 4.5))
        ax = fig.add_subplot()
        for key, colour in (("objective", "tab:blue"), ("distance", "tab:orange")):
            values = _positive(records[key])
            ax.plot(x, values, color=colour, label=key, linewidth=1.0)
        if np.isfinite(_positive(records["objective"])).any():
            ax.set_yscale("log")
        boundaries = x[1:][steps[1:] != steps[:-1]] - 0.5
        ax.vlines(
            boundaries,
            0,
            1,
            transform=ax.get_xaxis_transform(),
            colors="0.6",
            linestyles=":",
            linewidth=0.8,
            label="outer step",
        )
        ax.set_xlabel(f"inner iteration ({len(np.unique(steps))} recorded outer steps)")
        ax.set_ylabel("inner objective, distance")
        lr_ax = ax.twinx()
        lr = _positive(records["lr"])
        lr_ax.plot(x, lr, color="tab:green", linewidth=1.0, label="learning rate")
        if np.isfinite(lr).any():
            lr_ax.set_yscale("log")
        lr_ax.set_ylabel("learning rate", color="tab:green")
        handles = ax.get_legend_handles_labels()
        more = lr_ax.get_legend_handles_labels()
        ax.legend(handles[0] + more[0], handles[1] + more[1], fontsize="small", loc="best")
        title = f"{run.meta.get('experiment', '')}  {run.path.name}".strip()
        ax.set_title(f"proximal inner loop  {title}", fontsize="small")
        return {"inner_loop": fig}
