"""Drawing shared by the plot plugins, the animations and the live view.

Figures are :class:`matplotlib.figure.Figure` objects on the Agg canvas, outside
pyplot's global state; matplotlib is imported inside the functions that draw, so
importing this module costs nothing.

In the neuron plane a neuron ``r`` is the point ``w_r`` (a column of ``W``, ``d == 2``):
for 1-D inputs with a bias it is ``(w_r, b_r)``. Colour is the sign of the output
weight ``a_r`` (:data:`POSITIVE`, :data:`NEGATIVE`).
"""

import numpy as np

__all__ = [
    "POSITIVE",
    "NEGATIVE",
    "new_figure",
    "single_output",
    "signs",
    "abs_sizes",
    "plane_labels",
    "input_grid",
]

POSITIVE = "tab:red"
"""Colour of neurons with ``a_r >= 0`` (and of positive mass)."""
NEGATIVE = "tab:blue"
"""Colour of neurons with ``a_r < 0`` (and of negative mass)."""


def new_figure(figsize=(6.0, 4.5), layout="constrained"):
    """A figure on the Agg canvas, not registered with pyplot.

    Parameters
    ----------
    figsize : (float, float)
        Width and height in inches.
    layout : str or None
        matplotlib's layout engine.

    Returns
    -------
    fig : matplotlib.figure.Figure
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout=layout)
    FigureCanvasAgg(fig)
    return fig


def single_output(a, ndim):
    """Output weights with ``ndim`` dimensions: drop a trailing output axis of length 1.

    ``ndim`` is 1 for one network (``(m,)`` or ``(m, 1)``), 2 for stacked snapshots.

    Examples
    --------
    >>> single_output(np.ones((3, 1)), 1).shape
    (3,)
    >>> single_output(np.ones((3, 2)), 1).shape
    (3, 2)
    """
    a = np.asarray(a)
    return a[..., 0] if a.ndim == ndim + 1 and a.shape[-1] == 1 else a


def signs(a):
    """Colour of each neuron by the sign of ``a`` (zero counts as positive).

    Examples
    --------
    >>> signs(np.array([0.5, -1.0, 0.0])).tolist()
    ['tab:red', 'tab:blue', 'tab:red']
    """
    return np.where(np.asarray(a) >= 0, POSITIVE, NEGATIVE)


def abs_sizes(a, top, smallest=3.0, largest=60.0):
    """Marker areas growing linearly with ``|a|`` (``top`` gets ``largest``).

    Examples
    --------
    >>> abs_sizes(np.array([0.0, -2.0]), 2.0).tolist()
    [3.0, 60.0]
    """
    return smallest + (largest - smallest) * np.abs(a) / top


def plane_labels(bias):
    """Axis labels of the neuron plane: ``(w, b)`` with a bias, else ``(w_1, w_2)``."""
    if bias:
        return "input weight $w$", "bias $b$"
    return "$w_1$", "$w_2$"


def input_grid(x, bias, n_grid=400):
    """Inputs of a fitted curve: the range of ``x`` widened by 10 % on each side.

    Parameters
    ----------
    x : ndarray, shape (n,)
        The data's (only) input coordinate.
    bias : bool
        Append the constant-1 bias column.
    n_grid : int

    Returns
    -------
    grid : ndarray, shape (n_grid,)
    X : ndarray, shape (n_grid, d)
        ``grid`` with the bias column appended when ``bias``.

    Examples
    --------
    >>> grid, X = input_grid(np.array([0.0, 1.0]), True, n_grid=3)
    >>> grid.round(6).tolist(), X.shape
    ([-0.1, 0.5, 1.1], (3, 2))
    """
    x = np.asarray(x, dtype=float)
    lo, hi = float(x.min()), float(x.max())
    pad = 0.1 * (hi - lo) or 1.0
    grid = np.linspace(lo - pad, hi + pad, n_grid)
    if bias:
        return grid, np.column_stack([grid, np.ones_like(grid)])
    return grid, grid[:, None]
