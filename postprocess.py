"""Compute the indicators of a saved run, or the tables of a sweep.

Usage::

    python postprocess.py [RUN] [--runs-dir DIR] [--json] [--debug]
    python postprocess.py --list [--experiment NAME] [--runs-dir DIR] [--json]
    python postprocess.py --compare RUN RUN ... | --compare --experiment NAME [--json]

``RUN`` is a run directory, an experiment directory (its newest run), a sweep folder
or ``latest`` (default). For a run, every indicator plugin whose ``applies(run)`` is
true contributes; its keys are prefixed with its name (``patterns.n_patterns``).
Writes, atomically (:func:`core.analysis.write_indicators`):

``RUN/indicators.csv``
    one row per parameter snapshot: ``step`` and every per-snapshot indicator;
``RUN/indicators.json``
    the summary (non-finite numbers written as ``null``).

For a sweep, writes ``summary.csv`` (one row per run) and ``groups.csv`` (statistics
over seeds) with :func:`core.sweep.summarize_sweep`, the tables of the applicable
``sweep_analysis`` plugins (:func:`core.sweep.analyse_sweep`), and prints the groups.

``--list`` prints the runs index (every run and sweep under the runs root, newest
first, from their ``meta.json``); ``--compare`` groups runs by their differing config
values, seeds pooled, and prints one row per group (:mod:`core.runs_index`).

The computations live in :mod:`core.analysis` and :mod:`core.runs_index`; this script
parses arguments and prints.
"""

import argparse
import json
import math
import os
import sys

from core.analysis import json_safe, write_indicators
from core.cli import add_run_argument, report_error
from core.store import load_run, resolve_target
from core.sweep import SweepResults, analyse_sweep, is_sweep_dir, summarize_sweep

__all__ = ["main", "print_table", "print_sweep_table"]


def _format(value):
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def print_table(run, summary):
    """Print a run's indicator summary as a rich table: indicator, quantity, value."""
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


def print_sweep_table(path, rows, groups):
    """Print a sweep's groups (one row per cell of swept values) as a rich table.

    Columns: the swept keys, runs done / points, failed runs, the success fraction
    (only when the sweep sets ``success``), and the mean ± std over seeds of the
    final loss and of the steps.
    """
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"{path}  ({len(rows)} runs, {len(groups)} cells)",
        caption="mean ± std over seeds; every indicator: groups.csv",
    )
    keys = list(groups[0])[: list(groups[0]).index("n")] if groups else []
    has_success = bool(groups) and "success" in groups[0]
    for column in [*keys, "done", "failed"] + ["success"] * has_success:
        table.add_column(column, justify="right", no_wrap=True, min_width=len(column))
    table.add_column("final_loss", justify="right", no_wrap=True)
    table.add_column("steps", justify="right", no_wrap=True)
    for group in groups:
        success = [_cell(group["success"])] if has_success else []
        table.add_row(
            *(_cell(group[k]) for k in keys),
            f"{group['n_done']}/{group['n']}",
            _cell(group["n_failed"]),
            *success,
            _mean_std(group, "final_loss"),
            _mean_std(group, "steps"),
        )
    Console().print(table)


def _postprocess_sweep(path, as_json):
    """Write summary.csv and groups.csv of a sweep folder and print its groups."""
    rows, groups = summarize_sweep(path)
    written = analyse_sweep(SweepResults(path, rows, groups))
    if as_json:
        plain = [{k: v for k, v in r.items() if k != "values"} for r in rows]
        print(json.dumps(json_safe({"rows": plain, "groups": groups}), indent=2))
        return 0
    print_sweep_table(path, rows, groups)
    failed = sum(r["status"] == "failed" for r in rows)
    print(
        f"wrote {path / 'summary.csv'}\nwrote {path / 'groups.csv'}"
        + "".join(f"\nwrote {p}" for p in written)
        + (f"\n{failed} run(s) failed" if failed else "")
    )
    return 0


def _parser():
    parser = argparse.ArgumentParser(
        prog="postprocess.py", description="Compute the indicators of a saved run."
    )
    add_run_argument(parser, "run or sweep")
    parser.add_argument(
        "--json", action="store_true", help="print the summary as JSON instead of a table"
    )
    parser.add_argument(
        "--list", action="store_true", help="list the runs and sweeps under the runs root"
    )
    parser.add_argument(
        "--compare",
        nargs="*",
        metavar="RUN",
        help="compare runs (or sweeps, or --experiment NAME): one row per config, seeds pooled",
    )
    parser.add_argument("--experiment", help="with --list or --compare: only this experiment")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    return parser


def _runs_index(args):
    """``--list`` and ``--compare``: tables of :mod:`core.runs_index`."""
    from core import runs_index

    root = args.runs_dir or os.environ.get("RELULAB_RUNS_DIR", "runs")
    if args.list:
        entries = runs_index.list_runs(root, args.experiment)
        if args.json:
            plain = [{k: v for k, v in e.items() if k != "values"} for e in entries]
            print(json.dumps(json_safe(plain), indent=2))
        else:
            runs_index.print_runs_table(entries, root)
        return 0
    targets = list(args.compare) + ([args.run] if args.run != "latest" else [])
    runs = runs_index.runs_of(targets, root, args.experiment)
    keys, groups = runs_index.compare(runs)
    rows = runs_index.comparison_rows(groups)
    if args.json:
        print(json.dumps(json_safe({"keys": keys, "groups": rows}), indent=2))
    else:
        runs_index.print_comparison_table(keys, rows)
    return 0


def main(argv=None):
    """Command-line entry point; returns the exit code."""
    args = _parser().parse_args(argv)
    try:
        if args.list or args.compare is not None:
            return _runs_index(args)
        target = resolve_target(args.run, runs_dir=args.runs_dir)
        if is_sweep_dir(target):
            return _postprocess_sweep(target, args.json)
        run = load_run(target)
        summary, _, paths = write_indicators(run)
        if args.json:
            print(json.dumps(json_safe(summary), indent=2))
            return 0
        print_table(run, summary)
        for path in paths:
            print(f"wrote {path}")
    except Exception as exc:
        return report_error(exc, args.debug)
    return 0


if __name__ == "__main__":
    sys.exit(main())
