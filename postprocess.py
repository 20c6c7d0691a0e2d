"""Compute the indicators of a saved run: a summary table, ``indicators.csv`` and ``.json``.

Usage::

    python postprocess.py [RUN] [--runs-dir DIR] [--json] [--debug]

``RUN`` is a run directory, an experiment directory (its newest run) or ``latest``
(default). Every indicator plugin whose ``applies(run)`` is true contributes; its keys
are prefixed with its name (``patterns.n_distinct``). Writes, atomically:

``RUN/indicators.csv``
    one row per parameter snapshot: ``step`` and every per-snapshot indicator;
``RUN/indicators.json``
    the summary (non-finite numbers written as ``null``).

:func:`compute_indicators` is the library entry point (sweep aggregation uses it).
"""

import argparse
import csv
import io
import json
import math
import sys

import numpy as np

from core.cli import add_run_argument, report_error
from core.errors import RunStoreError
from core.params import validate_params
from core.registry import get_registry
from core.store import atomic_write_bytes, atomic_write_json, load_run, resolve_target
from core.sweep import is_sweep_dir

__all__ = ["compute_indicators", "indicators_csv", "main"]


def _plain(value):
    return value.item() if isinstance(value, np.generic) else value


def _indicators(registry):
    """One instance (default parameters) of every installed indicator plugin.

    Pieces whose optional extra is missing are skipped; a name provided twice raises
    :class:`core.errors.PluginError`.
    """
    out = []
    for entry in registry.entries("indicator"):
        if entry.available:
            cls = registry.get("indicator", entry.name)
            out.append(cls(**validate_params(f"indicator {entry.name}", {}, cls.params)))
    return out


def compute_indicators(run, registry=None):
    """All applicable indicators of a run.

    Parameters
    ----------
    run : core.store.Run
    registry : core.registry.Registry, optional
        Where the indicator plugins come from (default: :func:`core.registry.get_registry`).

    Returns
    -------
    summary : dict
        ``"<indicator>.<key>" -> value`` (float, int, str or None).
    columns : dict of ndarray, each of shape (n_snapshots,)
        ``"step"`` and ``"<indicator>.<key>"`` for every per-snapshot value (NaN where
        an indicator gave no value for a snapshot).
    """
    registry = registry or get_registry()
    indicators = [ind for ind in _indicators(registry) if ind.applies(run)]
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


def _json_safe(summary):
    """Non-finite floats as None, so the file is strict JSON."""
    return {
        k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in summary.items()
    }


def _format(value):
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def print_table(run, summary):
    """Print the summary as a rich table: indicator, quantity, value."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=str(run.path), title_justify="left")
    table.add_column("indicator")
    table.add_column("quantity")
    table.add_column("value", justify="right")
    previous = None
    for key, value in summary.items():
        indicator, _, quantity = key.partition(".")
        table.add_row(indicator if indicator != previous else "", quantity, _format(value))
        previous = indicator
    Console().print(table)


def _require_complete(run):
    for name in ("config.json", "problem.npz"):
        if not (run.path / name).is_file():
            raise RunStoreError(f"incomplete run {run.path}: no {name}")


def postprocess(run, registry=None):
    """Compute the indicators of ``run`` and write ``indicators.csv`` / ``.json``.

    Returns
    -------
    summary, columns
        As :func:`compute_indicators`.
    paths : list of Path
        The files written.
    """
    _require_complete(run)
    summary, columns = compute_indicators(run, registry)
    csv_path, json_path = run.path / "indicators.csv", run.path / "indicators.json"
    atomic_write_bytes(csv_path, indicators_csv(columns).encode())
    atomic_write_json(json_path, _json_safe(summary))
    return summary, columns, [csv_path, json_path]


def _parser():
    parser = argparse.ArgumentParser(
        prog="postprocess.py", description="Compute the indicators of a saved run."
    )
    add_run_argument(parser, "run or sweep")
    parser.add_argument(
        "--json", action="store_true", help="print the summary as JSON instead of a table"
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    return parser


def _postprocess_sweep(path, as_json):
    """Aggregate a sweep folder: summary.csv, groups.csv and a table of the groups."""
    from rich.console import Console
    from rich.table import Table

    from core.sweep import summarize_sweep

    rows, groups = summarize_sweep(path)
    if as_json:
        plain = [{k: v for k, v in r.items() if k != "values"} for r in rows]
        print(json.dumps(_json_safe({"rows": plain, "groups": groups}), indent=2))
        return 0
    table = Table(title=f"{path}  ({len(rows)} runs, {len(groups)} cells)",
                  caption="mean ± std over seeds; every indicator: groups.csv")
    keys = list(groups[0])[: list(groups[0]).index("n")] if groups else []
    has_success = bool(groups) and "success" in groups[0]
    for column in [*keys, "done", "failed"] + ["success"] * has_success:
        table.add_column(column, justify="right", no_wrap=True, min_width=len(column))
    table.add_column("final_loss", justify="right", no_wrap=True)
    table.add_column("steps", justify="right", no_wrap=True)
    for group in groups:
        table.add_row(*(_cell(group[k]) for k in keys), f"{group['n_done']}/{group['n']}",
                      _cell(group["n_failed"]),
                      *[_cell(group["success"])] * has_success,
                      _mean_std(group, "final_loss"), _mean_std(group, "steps"))
    Console().print(table)
    failed = sum(r["status"] == "failed" for r in rows)
    print(f"wrote {path / 'summary.csv'}\nwrote {path / 'groups.csv'}"
          + (f"\n{failed} run(s) failed" if failed else ""))
    return 0


def _mean_std(group, metric):
    mean, std = group.get(f"{metric}_mean"), group.get(f"{metric}_std")
    if mean is None or not math.isfinite(mean):
        return ""
    if std is None or not math.isfinite(std) or std == 0:
        return f"{mean:.4g}"
    return f"{mean:.3g} ± {std:.1g}"


def _cell(value):
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def main(argv=None):
    """Command-line entry point; returns the exit code."""
    args = _parser().parse_args(argv)
    try:
        target = resolve_target(args.run, runs_dir=args.runs_dir)
        if is_sweep_dir(target):
            return _postprocess_sweep(target, args.json)
        run = load_run(target)
        summary, _, paths = postprocess(run)
    except Exception as exc:
        return report_error(exc, args.debug)
    if args.json:
        print(json.dumps(_json_safe(summary), indent=2))
    else:
        print_table(run, summary)
        for path in paths:
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
