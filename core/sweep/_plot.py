"""The sweep figures: curves over one swept dimension, heat maps over two, and those of
the ``sweep_analysis`` plugins (:mod:`core.sweep._results`).

A dimension is a grid key with more than one value, or the zip (its rows, one
dimension). The figures show, per cell (seeds pooled, see
:func:`core.sweep.summarize_sweep`):

* ``sweep_final_loss``: mean final loss, with the std over seeds as error bars on
  curves; log scale when every value is positive;
* ``sweep_success``: the success fraction, when the sweep sets ``success``.

With more than two dimensions, one heat map is drawn over the first two for each
combination of the others (the stem names it).
"""

import itertools
import json
import math
import re

import numpy as np

from ..errors import PluginError
from ._aggregate import BASE_METRICS, summarize_sweep
from ._folder import load_sweep
from ._results import SweepResults, draw_sweep_analyses

__all__ = ["plot_sweep"]


def _label(value):
    return f"{value:g}" if isinstance(value, float) else str(value)


def _dimensions(sweep):
    """``[(name, keys, [values dict per position])]`` of the varying dimensions."""
    spec = sweep["spec"]
    dims = [
        (key, [key], [{key: v} for v in values])
        for key, values in spec["grid"].items()
        if len(values) > 1
    ]
    zipped = spec["zip"]
    rows = list(zip(*zipped.values())) if zipped else []
    if len(rows) > 1:
        dims.append((" / ".join(zipped), list(zipped), [dict(zip(zipped, r)) for r in rows]))
    return dims


def _numeric(values):
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def _position_labels(dim):
    name, keys, positions = dim
    return [", ".join(_label(p[k]) for k in keys) for p in positions]


def plot_sweep(path, groups=None, registry=None):
    """Figures of a sweep folder.

    Parameters
    ----------
    path : path
        A sweep folder.
    groups : list of dict, optional
        The groups of :func:`summarize_sweep` (computed when not given; of the
        indicators, only the one the success threshold reads, if any).
    registry : Registry, optional

    Returns
    -------
    figures : dict
        File stem -> matplotlib Figure (empty when nothing is swept but seeds).
    """
    from matplotlib.figure import Figure

    sweep = load_sweep(path)
    success = sweep["spec"].get("success")
    rows = None
    if groups is None:
        needs = success is not None and success["key"] not in BASE_METRICS
        # only the indicator the threshold reads ("<indicator>.<key>")
        names = {success["key"].split(".", 1)[0]} if needs else False
        rows, groups = summarize_sweep(path, registry, indicators=names, write=False)
    results = SweepResults(path, rows, groups, registry)
    dims = _dimensions(sweep)
    if not dims:
        return draw_sweep_analyses(results, registry)
    keys = sweep["keys"]
    by_cell = {json.dumps({k: g[k] for k in keys}, sort_keys=True): g for g in groups}
    constant = {k: v[0] for k, v in sweep["spec"]["grid"].items() if len(v) == 1}
    zipped = sweep["spec"]["zip"]
    if zipped and len(next(iter(zipped.values()))) == 1:
        constant.update({k: v[0] for k, v in zipped.items()})
    metrics = [("final_loss", "mean final loss")]
    if success is not None:
        bound = "below" if "below" in success else "above"
        metrics.append(("success", f"fraction with {success['key']} {bound} {success[bound]:g}"))

    def group_at(*positions):
        values = dict(constant)
        for position in positions:
            values.update(position)
        return by_cell.get(json.dumps({k: values[k] for k in keys}, sort_keys=True))

    figures = {}
    for metric, title in metrics:
        if len(dims) == 1:
            figures[f"sweep_{metric}"] = _curve(Figure, dims[0], metric, title, group_at)
            continue
        rest = dims[2:]
        for combo in itertools.product(*[d[2] for d in rest]):
            fixed = [(k, _label(v)) for c in combo for k, v in c.items()]
            suffix = "".join(f"_{k}={v}" for k, v in fixed)
            stem = re.sub(r"[^A-Za-z0-9_.=+-]", "_", f"sweep_{metric}{suffix}")
            where = ", ".join(f"{k}={v}" for k, v in fixed)

            def at(a, b, c=combo):
                return group_at(a, b, *c)

            figures[stem] = _heatmap(Figure, dims[0], dims[1], metric, title, where, at)
            if metric == "success" and all(_is_axis(d) for d in dims[:2]):
                figures[f"{stem}_contour"] = _contour(Figure, dims[0], dims[1], title, where, at)
    extra = draw_sweep_analyses(results, registry)
    clash = sorted(set(extra) & set(figures))
    if clash:
        raise PluginError(f"a sweep analysis draws {clash[0]!r}, a stem of the sweep's own figures")
    return {**figures, **extra}


def _is_axis(dim):
    """Whether a swept dimension is one numeric key (a contour plot's axis)."""
    _, keys, positions = dim
    return len(keys) == 1 and len(positions) > 1 and _numeric([p[keys[0]] for p in positions])


def _contour(Figure, dim_y, dim_x, title, where, group_at):
    """The success fraction as filled contours at 0, 0.1, ..., 1, with the line y = x.

    The phase-transition figure of Wang et al. (2022): recovery probability over
    (n, d), the diagonal n = d drawn where the two axes' ranges overlap.
    """
    x = np.array([p[dim_x[1][0]] for p in dim_x[2]], dtype=float)
    y = np.array([p[dim_y[1][0]] for p in dim_y[2]], dtype=float)
    Z = np.array(
        [[_value(group_at(py, px), "success")[0] for px in dim_x[2]] for py in dim_y[2]],
        dtype=float,
    )
    fig = Figure(figsize=(6, 4.5), layout="constrained")
    ax = fig.add_subplot()
    filled = ax.contourf(
        x, y, np.ma.masked_invalid(Z), levels=np.linspace(0, 1, 11), vmin=0, vmax=1, cmap="viridis"
    )
    lo, hi = max(x.min(), y.min()), min(x.max(), y.max())
    if lo < hi:
        ax.plot([lo, hi], [lo, hi], "r--", label=f"{dim_y[0]} = {dim_x[0]}")
        ax.legend(loc="best", fontsize=8)
    fig.colorbar(filled, ax=ax, label=title)
    ax.set_xlabel(dim_x[0])
    ax.set_ylabel(dim_y[0])
    ax.set_title(f"{title}\n{where}" if where else title, fontsize=9)
    return fig


def _value(group, metric):
    if group is None:
        return math.nan, math.nan
    if metric == "success":
        return group.get("success", math.nan), math.nan
    return group.get(f"{metric}_mean", math.nan), group.get(f"{metric}_std", math.nan)


def _curve(Figure, dim, metric, title, group_at):
    name, keys, positions = dim
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.add_subplot()
    values = [p[keys[0]] for p in positions]
    x = (
        np.asarray(values, dtype=float)
        if len(keys) == 1 and _numeric(values)
        else (np.arange(len(positions), dtype=float))
    )
    y, err = np.array([_value(group_at(p), metric) for p in positions], dtype=float).T
    ax.errorbar(x, y, yerr=None if metric == "success" else err, marker="o", capsize=3)
    if not (len(keys) == 1 and _numeric(values)):
        ax.set_xticks(x, _position_labels(dim), rotation=30 if len(x) > 6 else 0)
    elif np.all(x > 0) and x.max() / x.min() >= 100:
        ax.set_xscale("log")
    finite = y[np.isfinite(y)]
    if metric == "success":
        ax.set_ylim(-0.05, 1.05)
    elif len(finite) and np.all(finite > 0):
        ax.set_yscale("log")
    ax.set_xlabel(name)
    ax.set_ylabel(title)
    ax.set_title(
        f"{title} over {name} (error bars: std over seeds)"
        if metric != "success"
        else f"{title} over {name}",
        fontsize=9,
    )
    ax.grid(alpha=0.3)
    return fig


def _heatmap(Figure, dim_y, dim_x, metric, title, where, group_at):
    from matplotlib.colors import LogNorm, Normalize

    Z = np.array(
        [[_value(group_at(py, px), metric)[0] for px in dim_x[2]] for py in dim_y[2]], dtype=float
    )
    finite = Z[np.isfinite(Z)]
    if metric == "success":
        norm = Normalize(0.0, 1.0)
    elif len(finite) and np.all(finite > 0) and finite.max() > finite.min():
        norm = LogNorm(finite.min(), finite.max())
    else:
        norm = None
    fig = Figure(
        figsize=(1.2 + 0.6 * Z.shape[1] + 2, 1.2 + 0.5 * Z.shape[0] + 1), layout="constrained"
    )
    ax = fig.add_subplot()
    image = ax.imshow(
        np.ma.masked_invalid(Z), origin="lower", aspect="auto", norm=norm, cmap="viridis"
    )
    ax.set_xticks(range(Z.shape[1]), _position_labels(dim_x), rotation=45 if Z.shape[1] > 6 else 0)
    ax.set_yticks(range(Z.shape[0]), _position_labels(dim_y))
    ax.set_xlabel(dim_x[0])
    ax.set_ylabel(dim_y[0])
    if Z.size <= 144:
        for (i, j), z in np.ndenumerate(Z):
            if math.isfinite(z):
                r, g, b, _ = image.cmap(image.norm(z))
                color = "k" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "w"
                ax.text(j, i, f"{z:.2g}", ha="center", va="center", fontsize=7, color=color)
    fig.colorbar(image, ax=ax, label=title)
    ax.set_title(f"{title}\n{where}" if where else title, fontsize=9)
    return fig
