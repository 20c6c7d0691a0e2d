"""Sweep tables: one row per run (``summary.csv``), statistics over seeds (``groups.csv``)."""

import json
import math
from pathlib import Path

import numpy as np

from ..analysis import compute_indicators, scalar_summary
from ..registry import get_registry
from ..store import Run, atomic_write_bytes
from ._folder import DONE_STATUSES, csv_text, load_sweep, read_meta

__all__ = ["summarize_sweep", "success_of"]

BASE_METRICS = ("final_loss", "best_loss", "steps")


def _is_number(value):
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
        value, (bool, np.bool_)
    )


def _run_numbers(run_path):
    """``final_loss`` (last logged loss) and ``best_loss`` from a run's own trace."""
    loss = Run(run_path).scalars.get("loss")
    if loss is None or not len(loss):
        return math.nan, math.nan
    finite = loss[np.isfinite(loss)]
    return float(loss[-1]), float(finite.min()) if len(finite) else math.nan


def _indicator_summary(run_path, registry, names=None):
    """Scalar indicator summary of a run (:func:`core.analysis.compute_indicators`)."""
    summary, _ = compute_indicators(Run(run_path), registry, names)
    return scalar_summary(summary)


def success_of(value, success):
    """Whether ``value`` meets the sweep's ``success`` threshold (NaN never does)."""
    if not _is_number(value) or not math.isfinite(value):
        return False
    return value < success["below"] if "below" in success else value > success["above"]


def _stats(values):
    values = np.asarray(values, dtype=float)
    if not len(values):
        return math.nan, math.nan
    std = float(values.std(ddof=1)) if len(values) > 1 else math.nan
    return float(values.mean()), std


def _group_rows(rows, keys, success, metrics):
    """Rows grouped by the swept values (seeds pooled), in point order."""
    groups = {}
    for row in rows:
        key = json.dumps([row["values"][k] for k in keys], sort_keys=True)
        groups.setdefault(key, []).append(row)
    out = []
    for members in groups.values():
        ended = [r for r in members if r["status"] in DONE_STATUSES + ("failed",)]
        done = [r for r in members if r["status"] in DONE_STATUSES]
        group = {
            **members[0]["values"],
            "n": len(members),
            "n_done": len(done),
            "n_failed": sum(r["status"] == "failed" for r in members),
        }
        if success is not None:
            hits = sum(success_of(r.get(success["key"]), success) for r in ended)
            group["success"] = hits / len(ended) if ended else math.nan
        for metric in metrics:
            values = [
                r[metric] for r in done if _is_number(r.get(metric)) and math.isfinite(r[metric])
            ]
            group[f"{metric}_mean"], group[f"{metric}_std"] = _stats(values)
            group[f"{metric}_count"] = len(values)
        out.append(group)
    return out


def summarize_sweep(path, registry=None, indicators=True, write=True):
    """Gather a sweep: one row per run, and statistics over seeds per swept cell.

    Parameters
    ----------
    path : path
        A sweep folder.
    registry : Registry, optional
        For the indicator plugins (default: :func:`core.registry.get_registry`).
    indicators : bool or collection of str
        Add the scalar summary of :func:`core.analysis.compute_indicators` to each
        row of a run that has its data: of every indicator (True), of the named
        ones, or of none (False).
    write : bool
        Write ``summary.csv`` and ``groups.csv`` into the sweep folder.

    Returns
    -------
    rows : list of dict
        Per point: ``point, id``, the swept keys, ``seed, status, reason, steps``,
        ``final_loss`` (last logged loss of the run's own trace, NaN if none),
        ``best_loss`` (smallest finite logged loss) and the indicators'
        ``<indicator>.<key>`` values (``indicator_error`` if they raised). Each row
        also holds ``values``, the swept values as a dict (not written to CSV).
    groups : list of dict
        Per cell of swept values: the swept keys, ``n`` (points), ``n_done``
        (finished or diverged), ``n_failed``, ``success`` (fraction of the ended
        runs — done or failed — whose ``sweep.success.key`` value is below/above
        the threshold; only when the sweep sets ``success``), and for
        ``final_loss``, ``best_loss``, ``steps`` and every numeric indicator:
        ``<metric>_mean``, ``<metric>_std`` (sample std, NaN below two values) and
        ``<metric>_count``, over the done runs with a finite value.
    """
    path = Path(path)
    sweep = load_sweep(path)
    if indicators:
        registry = registry or get_registry()
    keys = sweep["keys"]
    success = sweep["spec"].get("success")
    rows = []
    for point in sweep["points"]:
        run_path = path / point["run"]
        values = {k: point["overrides"][k] for k in keys}
        row = {
            "point": point["index"],
            "id": point["id"],
            **values,
            "seed": point["seed"],
            "status": "pending",
            "reason": None,
            "steps": None,
            "final_loss": math.nan,
            "best_loss": math.nan,
        }
        meta = read_meta(run_path)
        if meta is not None:
            row.update(
                status=meta.get("status"), reason=meta.get("reason"), steps=meta.get("steps")
            )
            row["final_loss"], row["best_loss"] = _run_numbers(run_path)
            if indicators and (run_path / "problem.npz").is_file():
                try:
                    names = None if indicators is True else indicators
                    row.update(_indicator_summary(run_path, registry, names))
                except Exception as exc:
                    row["indicator_error"] = f"{type(exc).__name__}: {exc}"
        row["values"] = values
        rows.append(row)
    extra = []
    for row in rows:
        extra.extend(k for k in row if k not in extra and "." in k and k not in keys)
    metrics = list(BASE_METRICS) + [k for k in extra if any(_is_number(r.get(k)) for r in rows)]
    groups = _group_rows(rows, keys, success, metrics)
    if write:
        columns = []
        for row in rows:
            columns.extend(k for k in row if k not in columns and k != "values")
        atomic_write_bytes(path / "summary.csv", csv_text(rows, columns).encode())
        atomic_write_bytes(path / "groups.csv", csv_text(groups).encode())
    return rows, groups
