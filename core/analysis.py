"""Analysis of a saved run: its indicators and figures, and the files they go to.

``postprocess.py`` and ``plot.py`` are thin command lines over this module; sweep
aggregation (:func:`core.sweep.summarize_sweep`) adds :func:`compute_indicators` of
every run to its tables.

* :func:`compute_indicators` runs every applicable indicator plugin on a run: a
  summary (``"<indicator>.<key>" -> value``) and per-snapshot columns;
  :func:`write_indicators` also writes them to ``RUN/indicators.csv`` and ``.json``.
* :func:`draw_plots` draws every applicable plot plugin (or those named);
  :func:`save_figures` writes figures as ``<stem>.png``.
* :func:`saved_problem` is the :class:`core.components.Problem` a run was trained on,
  read back from its files, for the quantities of :mod:`core.quantities`.

Every plugin is built with its declared defaults
(:meth:`core.registry.Registry.build_all`); files are written atomically.
"""

import csv
import io
import math
import weakref

import numpy as np

from .errors import PluginError, RunStoreError
from .problem import problem_from_arrays
from .registry import get_registry
from .store import atomic_write_bytes, atomic_write_json

__all__ = [
    "DPI",
    "has_bias",
    "saved_problem",
    "require_complete",
    "compute_indicators",
    "scalar_summary",
    "indicators_csv",
    "json_safe",
    "write_indicators",
    "draw_plots",
    "save_figures",
]

DPI = 150
"""Resolution of the PNG files :func:`save_figures` writes, in dots per inch."""


def has_bias(run):
    """Whether the last input column of a run's data is the constant-1 bias column.

    The flag stored in ``problem.npz``, else the run's meta (older runs).
    """
    flag = run.problem.get("bias")
    return bool(flag) if flag is not None else run.bias


def saved_problem(run):
    """The problem a run was trained on, from ``problem.npz`` and ``config.json``.

    Read once per :class:`core.store.Run` object (indicators ask for it at every
    snapshot) and shared: do not modify it.

    Parameters
    ----------
    run : core.store.Run

    Returns
    -------
    problem : core.components.Problem
        ``X, Y, W0, a0``, ``X_test, Y_test`` (None when the run has no test set),
        ``extras``, ``bias`` (:func:`has_bias`), and ``scaling``, ``loss``, ``seed``
        from the config; ``rng`` is a fresh generator of the seed, not the stream the
        algorithm drew from.
    """
    problem = _SAVED_PROBLEMS.get(run)
    if problem is None:
        arrays, config = run.problem, run.config
        problem = _SAVED_PROBLEMS[run] = problem_from_arrays(
            config, arrays, np.random.default_rng(config["seed"]), bias=has_bias(run)
        )
    return problem


_SAVED_PROBLEMS = weakref.WeakKeyDictionary()  # Run -> Problem, dropped with the Run


def require_complete(run):
    """Raise :class:`core.errors.RunStoreError` unless the run has its config and data."""
    for name in ("config.json", "problem.npz"):
        if not (run.path / name).is_file():
            raise RunStoreError(f"incomplete run {run.path}: no {name}")


def _plain(value):
    return value.item() if isinstance(value, np.generic) else value


def compute_indicators(run, registry=None, names=None):
    """All applicable indicators of a run.

    Parameters
    ----------
    run : core.store.Run
    registry : core.registry.Registry, optional
        Where the indicator plugins come from (default: :func:`core.registry.get_registry`).
    names : collection of str, optional
        Only the indicators of these names (default: every registered one).

    Returns
    -------
    summary : dict
        ``"<indicator>.<key>" -> value`` (float, int, str or None).
    columns : dict of ndarray, each of shape (n_snapshots,)
        ``"step"`` and ``"<indicator>.<key>"`` for every per-snapshot value (NaN where
        an indicator gave no value for a snapshot).

    Raises
    ------
    core.errors.PluginError
        An indicator name provided by two plugins.
    """
    registry = registry or get_registry()
    indicators = [
        ind
        for ind in registry.build_all("indicator")
        if (names is None or ind.name in names) and ind.applies(run)
    ]
    summary = {}
    for ind in indicators:
        for key, value in ind.summary(run).items():
            summary[f"{ind.name}.{key}"] = _plain(value)
    snaps = run.snapshots
    n = len(snaps)
    columns = {"step": np.asarray(snaps.steps)}
    if n and "W" in snaps and "a" in snaps:
        rows = {}
        for i in range(n):
            W, a = snaps["W"][i], snaps["a"][i]
            for ind in indicators:
                for key, value in (ind.per_snapshot(run, W, a) or {}).items():
                    rows.setdefault(f"{ind.name}.{key}", [math.nan] * n)[i] = _plain(value)
        columns.update((key, np.asarray(values)) for key, values in rows.items())
    return summary, columns


def scalar_summary(summary):
    """The entries of an indicator summary that fit in a table cell (numbers, str, None)."""
    return {k: v for k, v in summary.items() if v is None or isinstance(v, (bool, int, float, str))}


def indicators_csv(columns):
    """CSV text of per-snapshot columns: a header, then one row per snapshot.

    Floats are written with ``repr`` so they read back exactly (``inf``, ``nan``).
    """
    names = list(columns)
    n = len(columns["step"]) if "step" in columns else 0
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(names)
    for i in range(n):
        writer.writerow([_plain(columns[name][i]) for name in names])
    return buffer.getvalue()


def json_safe(value):
    """``value`` with every non-finite float (in nested dicts and lists too) as None.

    So that ``json.dumps`` of the result is strict JSON (no ``NaN``, ``Infinity``).

    Examples
    --------
    >>> json_safe({"a": float("nan"), "b": [1.0, float("inf")]})
    {'a': None, 'b': [1.0, None]}
    """
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_indicators(run, registry=None):
    """Compute the indicators of ``run`` and write ``indicators.csv`` / ``.json`` into it.

    ``indicators.csv`` holds one row per parameter snapshot (the columns of
    :func:`compute_indicators`); ``indicators.json`` the summary, non-finite numbers
    as ``null``.

    Returns
    -------
    summary, columns
        As :func:`compute_indicators`.
    paths : list of Path
        The files written.

    Raises
    ------
    core.errors.RunStoreError
        The run has no ``config.json`` or ``problem.npz``.
    """
    require_complete(run)
    summary, columns = compute_indicators(run, registry)
    csv_path, json_path = run.path / "indicators.csv", run.path / "indicators.json"
    atomic_write_bytes(csv_path, indicators_csv(columns).encode())
    atomic_write_json(json_path, json_safe(summary))
    return summary, columns, [csv_path, json_path]


def draw_plots(run, registry=None, only=None):
    """Figures of every applicable plot.

    Parameters
    ----------
    run : core.store.Run
    registry : core.registry.Registry, optional
    only : sequence of str, optional
        Plot names to draw (an unknown name raises :class:`core.errors.PluginError`).

    Returns
    -------
    figures : dict
        ``stem -> matplotlib.figure.Figure``.
    skipped : list of str
        Names of the plots that do not apply to this run.

    Raises
    ------
    core.errors.RunStoreError
        The run has no ``config.json`` or ``problem.npz``.
    core.errors.PluginError
        An unknown name in ``only``, or two plots drawing the same stem.
    """
    require_complete(run)
    registry = registry or get_registry()
    figures, owner, skipped = {}, {}, []
    for plot in registry.build_all("plot", only=only, owner="--only"):
        if not plot.applies(run):
            skipped.append(plot.name)
            continue
        for stem, fig in plot.draw(run).items():
            if stem in figures:
                raise PluginError(f"plots {owner[stem]!r} and {plot.name!r} both draw {stem!r}")
            figures[stem], owner[stem] = fig, plot.name
    return figures, skipped


def save_figures(figures, directory, dpi=DPI):
    """Write each figure as ``directory/<stem>.png`` atomically.

    Parameters
    ----------
    figures : dict
        ``stem -> matplotlib.figure.Figure``.
    directory : Path
        Made when missing (not its parents).
    dpi : float
        Resolution in dots per inch.

    Returns
    -------
    paths : list of Path
        The files written, in the order of ``figures``.
    """
    directory.mkdir(exist_ok=True)
    paths = []
    for stem, fig in figures.items():
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=dpi)
        path = directory / f"{stem}.png"
        atomic_write_bytes(path, buffer.getvalue())
        paths.append(path)
    return paths
