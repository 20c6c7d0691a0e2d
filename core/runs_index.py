"""The runs index and run comparison: what ran, how it ended, and how runs differ.

:func:`list_runs` reads one ``meta.json`` per run (and ``sweep.json`` /
``status.json`` per sweep) under a runs root and returns one entry per run or sweep,
newest first, with the config keys in which a run differs from the other runs of its
experiment. A run made before ``meta.json`` carried ``algorithm`` and
``config_values`` has its ``config.json`` read instead (older runs only).

:func:`compare` groups runs by the config values that differ between them, ignoring
the seed: runs that differ only by their seed form one group, drawn by
:func:`plot_comparison` as a mean loss curve with a min-max band and summarised by
:func:`comparison_rows` (mean and spread of the final loss over the group).

Keys that never make runs different problems are ignored everywhere: ``run.*``
(where and how a run is shown), ``notes``, ``experiment`` and ``sweep.*``.
"""

import json
import math
import os
import warnings
from pathlib import Path

import numpy as np

from .errors import RelulabError, RunStoreError
from .run_folder import config_values
from .store import Run, read_json

__all__ = [
    "IGNORED",
    "run_entry",
    "sweep_entry",
    "list_runs",
    "differing_keys",
    "runs_of",
    "compare",
    "comparison_rows",
    "group_curve",
    "plot_comparison",
    "save_comparison",
    "format_value",
    "print_runs_table",
    "print_comparison_table",
]

IGNORED = ("run.", "notes", "experiment", "sweep.", "sweep")
"""Config keys (prefixes ending in ``.``, or exact keys) no comparison looks at."""


def _ignored(key):
    return any(key.startswith(p) if p.endswith(".") else key == p for p in IGNORED)


def format_value(value):
    """A config value as a short label: ``0.01``, ``'adamw'`` -> ``adamw``, lists as JSON.

    Examples
    --------
    >>> format_value(0.001), format_value("adamw"), format_value([1, 2]), format_value(None)
    ('0.001', 'adamw', '[1, 2]', 'None')
    """
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (list, dict)):
        return json.dumps(value, sort_keys=True)
    return str(value)


def _values_of(path, meta):
    """``(algorithm, {dotted key: value})`` from meta, else from config.json (old runs)."""
    values = meta.get("config_values")
    algorithm = meta.get("algorithm")
    if values is None or algorithm is None:
        try:
            config = read_json(Path(path) / "config.json")
        except RunStoreError:
            return algorithm, values or {}
        values = values if values is not None else config_values(config)
        algorithm = algorithm or (config.get("algorithm") or {}).get("name")
    return algorithm, values


def run_entry(path):
    """One run as the index shows it, read from its ``meta.json``.

    Parameters
    ----------
    path : Path
        A run folder.

    Returns
    -------
    entry : dict
        ``kind="run"``, ``experiment``, ``id`` (folder name), ``path``, ``created``,
        ``algorithm``, ``status`` (``crashed`` when meta says ``running`` but the
        process is gone), ``reason``, ``steps``, ``final_loss`` (None when unknown or
        not finite), ``wall_time`` (seconds of the loop, summed over resumes),
        ``seed`` and ``values`` (the flat config).
    """
    run = Run(path)
    meta = run.meta  # crash detection: Run.meta reads "running" with no live writer as crashed
    algorithm, values = _values_of(run.path, meta)
    return {
        "kind": "run",
        "experiment": meta.get("experiment") or run.path.parent.name,
        "id": run.path.name,
        "path": str(run.path),
        "created": meta.get("created"),
        "algorithm": algorithm,
        "status": meta.get("status"),
        "reason": meta.get("reason"),
        "steps": meta.get("steps"),
        "final_loss": meta.get("final_loss"),
        "wall_time": meta.get("wall_time"),
        "seed": meta.get("seed"),
        "values": values,
    }


def sweep_entry(path):
    """One sweep as the index shows it: its counts of point statuses.

    Reads ``sweep.json`` and the status table ``status.json`` (a view the sweep keeps
    current; see :mod:`core.sweep`), not the point folders. ``status`` is ``running``
    while a process holds ``sweep.lock``, else the counts (``"30 finished, 6
    pending"``); ``steps`` is the number of points; ``differs`` names the swept keys.
    """
    from .locks import is_locked

    path = Path(path)
    sweep = read_json(path / "sweep.json")
    points = sweep.get("points", [])
    counts = {}
    status_file = path / "status.json"
    if status_file.is_file():
        try:
            counts = read_json(status_file).get("counts", {})
        except RunStoreError:
            counts = {}
    done = sum(counts.values())
    if len(points) > done:
        counts = {**counts, "pending": counts.get("pending", 0) + len(points) - done}
    lock = path / "sweep.lock"
    running = os.path.lexists(lock) and is_locked(lock)
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    config = {}
    try:
        config = read_json(path / "config.json")
    except RunStoreError:
        pass
    return {
        "kind": "sweep",
        "experiment": sweep.get("experiment") or path.parent.name,
        "id": path.name,
        "path": str(path),
        "created": sweep.get("created"),
        "algorithm": (config.get("algorithm") or {}).get("name"),
        "status": "running" if running else (summary or "empty"),
        "reason": None,
        "steps": len(points),
        "final_loss": None,
        "wall_time": None,
        "seed": config.get("seed"),
        "values": {},
        "differs": {key: "swept" for key in sweep.get("keys", [])},
    }


def _folders(runs_dir, experiment=None):
    """``(path, is_sweep)`` of every run and sweep folder ``runs_dir/<experiment>/<id>/``."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        raise RunStoreError(f"no runs directory {runs_dir}")
    experiments = [runs_dir / experiment] if experiment else sorted(runs_dir.iterdir())
    found = []
    for folder in experiments:
        if not folder.is_dir():
            continue
        with os.scandir(folder) as entries:
            for item in entries:
                if not item.is_dir():
                    continue
                path = Path(item.path)
                if (path / "sweep.json").is_file():
                    found.append((path, True))
                elif (path / "meta.json").is_file():
                    found.append((path, False))
    if experiment and not found:
        raise RunStoreError(f"no runs of experiment {experiment!r} under {runs_dir}")
    return found


def _canonical(value):
    """A hashable, comparable stand-in for a config value (1 and True stay apart)."""
    if isinstance(value, (list, dict)):
        return json.dumps(value, sort_keys=True)
    return (type(value).__name__, value)


def differing_keys(entries, ignore=("seed",)):
    """The config keys whose values are not the same in every entry, sorted.

    A key some entries lack counts as differing (its value there is ``None``).
    ``ignore``: exact keys also left out (the seed, by default).

    Examples
    --------
    >>> a = {"values": {"seed": 0, "model.width": 10, "algorithm.lr": 0.1}}
    >>> b = {"values": {"seed": 1, "model.width": 20, "algorithm.lr": 0.1}}
    >>> differing_keys([a, b]), differing_keys([a, b], ignore=())
    (['model.width'], ['model.width', 'seed'])
    """
    keys = set()
    for entry in entries:
        keys.update(entry["values"])
    out = []
    for key in keys:
        if _ignored(key) or key in ignore or not entries:
            continue
        first = _canonical(entries[0]["values"].get(key))
        if any(_canonical(e["values"].get(key)) != first for e in entries[1:]):
            out.append(key)
    return sorted(out)


def list_runs(runs_dir, experiment=None):
    """Every run and sweep under ``runs_dir``, newest first.

    Parameters
    ----------
    runs_dir : str or Path
        The runs root (``runs/``): folders ``<experiment>/<stamp>-<id>/``.
    experiment : str, optional
        Only this experiment's folder.

    Returns
    -------
    entries : list of dict
        :func:`run_entry` / :func:`sweep_entry` dicts, ordered by folder name (its
        UTC stamp) newest first; each run also has ``differs``: ``{key: value}`` for
        the config keys (seed included) whose values are not the same in all the
        runs of its experiment. A folder that cannot be read is an entry of status
        ``unreadable`` whose reason says why; it does not stop the listing.
    """
    entries = []
    for path, is_sweep in _folders(runs_dir, experiment):
        try:
            entries.append(sweep_entry(path) if is_sweep else run_entry(path))
        except (RelulabError, OSError, ValueError) as exc:
            entries.append(
                {
                    "kind": "sweep" if is_sweep else "run",
                    "experiment": path.parent.name,
                    "id": path.name,
                    "path": str(path),
                    "status": "unreadable",
                    "reason": str(exc),
                    "values": {},
                    "differs": {},
                }
            )
    by_experiment = {}
    for entry in entries:
        if entry["kind"] == "run" and entry["status"] != "unreadable":
            by_experiment.setdefault(entry["experiment"], []).append(entry)
    for runs in by_experiment.values():
        keys = differing_keys(runs, ignore=())
        for entry in runs:
            entry["differs"] = {k: entry["values"].get(k) for k in keys}
    entries.sort(key=lambda e: (e["id"], e["experiment"]), reverse=True)
    return entries


def runs_of(targets=(), runs_dir=None, experiment=None):
    """The run folders a comparison is about.

    ``targets``: run folders, or sweep folders (each stands for its points' runs);
    ``experiment``: every run of ``runs_dir/<experiment>/`` (and of its sweeps).
    Returns a list of :class:`core.store.Run` in order of creation (``meta.json``'s
    ``created``, to the microsecond; then folder name: a folder's name has whole
    seconds and a random suffix, so runs made within one second sort at random by it).
    """
    paths = []
    if experiment:
        for path, is_sweep in _folders(runs_dir or "runs", experiment):
            paths.extend(_sweep_runs(path) if is_sweep else [path])
    for target in targets:
        target = Path(target)
        if (target / "sweep.json").is_file():
            paths.extend(_sweep_runs(target))
        elif (target / "meta.json").is_file():
            paths.append(target)
        else:
            raise RunStoreError(f"not a run or sweep folder (no meta.json): {target}")
    if not paths:
        raise RunStoreError("nothing to compare: give runs (--compare RUN RUN ...) or --experiment")
    unique = [Run(p) for p in dict.fromkeys(Path(p).resolve() for p in paths)]
    return sorted(
        unique, key=lambda r: (r.meta.get("created") or "", r.path.parent.name, r.path.name)
    )


def _sweep_runs(path):
    return sorted(p.parent for p in (Path(path) / "runs").glob("*/meta.json"))


def compare(runs):
    """Group runs by the config values that differ between them, the seed aside.

    Parameters
    ----------
    runs : list of core.store.Run

    Returns
    -------
    keys : list of str
        The differing config keys (seed excluded).
    groups : list of dict
        One per distinct combination of those values, in order of first appearance:
        ``label`` (``"key=value, ..."``, with the common prefix of the keys dropped,
        or ``"all runs"`` when nothing but seeds differs), ``values`` ``{key: value}``,
        ``runs`` (the :class:`Run` objects) and ``entries`` (their :func:`run_entry`).
    """
    entries = [run_entry(run.path) for run in runs]
    keys = differing_keys(entries)
    groups = {}
    for run, entry in zip(runs, entries):
        values = {k: entry["values"].get(k) for k in keys}
        ident = json.dumps(values, sort_keys=True)
        group = groups.setdefault(ident, {"values": values, "runs": [], "entries": []})
        group["runs"].append(run)
        group["entries"].append(entry)
    short = _short_names(keys)
    for group in groups.values():
        parts = [f"{short[k]}={format_value(v)}" for k, v in group["values"].items()]
        group["label"] = ", ".join(parts) or "all runs"
    return keys, list(groups.values())


def _short_names(keys):
    """The shortest dotted suffix of each key that no other key ends with."""
    out = {}
    for key in keys:
        parts = key.split(".")
        for i in range(len(parts) - 1, -1, -1):
            name = ".".join(parts[i:])
            if not any(o != key and (o == name or o.endswith("." + name)) for o in keys):
                break
        out[key] = name
    return out


def _stats(values):
    finite = [float(v) for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return None, None, None, None
    a = np.asarray(finite)
    return float(a.mean()), float(a.std()), float(a.min()), float(a.max())


def comparison_rows(groups):
    """One summary row per group of :func:`compare`, from the runs' meta only.

    Returns
    -------
    rows : list of dict
        ``label``, the differing values, ``n_runs``, ``seeds``, ``statuses``
        (``{status: count}``), ``final_loss_mean``, ``final_loss_std`` (population
        std over the group's runs with a finite final loss), ``final_loss_min``,
        ``final_loss_max``, ``steps_mean`` and ``wall_time_mean`` (seconds).
    """
    rows = []
    for group in groups:
        entries = group["entries"]
        statuses = {}
        for e in entries:
            statuses[e["status"]] = statuses.get(e["status"], 0) + 1
        mean, std, low, high = _stats([e["final_loss"] for e in entries])
        steps = [e["steps"] for e in entries if e["steps"] is not None]
        walls = [e["wall_time"] for e in entries if e["wall_time"] is not None]
        rows.append(
            {
                "label": group["label"],
                **group["values"],
                "n_runs": len(entries),
                "seeds": [e["seed"] for e in entries],
                "statuses": statuses,
                "final_loss_mean": mean,
                "final_loss_std": std,
                "final_loss_min": low,
                "final_loss_max": high,
                "steps_mean": float(np.mean(steps)) if steps else None,
                "wall_time_mean": float(np.mean(walls)) if walls else None,
            }
        )
    return rows


def group_curve(runs, key="loss"):
    """Mean and min-max band of one scalar over runs, on the steps all of them logged.

    Parameters
    ----------
    runs : list of core.store.Run
    key : str
        A scalar of the trace (``loss``, ``test_loss``...).

    Returns
    -------
    steps : ndarray, shape (s,)
        Steps logged by every run that has ``key`` (the intersection).
    mean, low, high : ndarray, shape (s,)
        Mean, minimum and maximum over those runs at each step (NaN where a run's
        value is not finite and no run's is).
    n : int
        Number of runs averaged.
    """
    curves = []
    for run in runs:
        scalars = run.scalars
        if key in scalars and "step" in scalars and len(scalars["step"]):
            curves.append((np.asarray(scalars["step"]), np.asarray(scalars[key], dtype=float)))
    if not curves:
        empty = np.zeros(0)
        return empty.astype(np.int64), empty, empty, empty, 0
    steps = curves[0][0]
    for s, _ in curves[1:]:
        steps = np.intersect1d(steps, s)
    stacked = np.stack([v[np.searchsorted(s, steps)] for s, v in curves])
    stacked = np.where(np.isfinite(stacked), stacked, np.nan)
    with warnings.catch_warnings():  # all-NaN columns give NaN, quietly
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(stacked, axis=0)
        low, high = np.nanmin(stacked, axis=0), np.nanmax(stacked, axis=0)
    return steps, mean, low, high, len(curves)


def plot_comparison(groups, key="loss"):
    """Loss curves of the groups of :func:`compare` on one figure.

    A group of one run is its curve; a group of several (runs differing only by
    seed) is their mean curve with the min-max band shaded, labelled with the number
    of runs. Log scale on the loss axis when every value is positive.

    Returns
    -------
    figure : matplotlib.figure.Figure
    """
    from .figures import new_figure

    fig = new_figure(figsize=(7.0, 4.5))
    ax = fig.add_subplot()
    positive = True
    for group in groups:
        steps, mean, low, high, n = group_curve(group["runs"], key)
        if n == 0:
            continue
        label = group["label"] + (f" (mean of {n} seeds)" if n > 1 else "")
        (line,) = ax.plot(steps, mean, label=label)
        if n > 1:
            ax.fill_between(steps, low, high, color=line.get_color(), alpha=0.25, linewidth=0)
        finite = mean[np.isfinite(mean)]
        positive &= bool(finite.size) and bool((low[np.isfinite(low)] > 0).all())
    if positive and ax.lines:
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel(key)
    experiments = sorted({e["experiment"] for g in groups for e in g["entries"]})
    ax.set_title(", ".join(experiments), fontsize="small")
    if ax.lines:
        ax.legend(fontsize="small")
    return fig


def _number(value, fmt):
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return format(value, fmt)


def _duration(seconds):
    """``12.3s``, ``4m05s``, ``2h03m``."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    return f"{minutes // 60}h{minutes % 60:02d}m"


_STATUS_STYLE = {
    "finished": "green",
    "running": "cyan",
    "crashed": "bold red",
    "failed": "red",
    "diverged": "yellow",
    "interrupted": "yellow",
}


def _console(console=None):
    """The given console, else stdout's (160 columns wide when it is not a terminal)."""
    from rich.console import Console

    if console is not None:
        return console
    console = Console()
    return console if console.is_terminal else Console(width=160)


def print_runs_table(entries, root=None, console=None):
    """Print :func:`list_runs` entries as a rich table (one row per run or sweep)."""
    from rich.table import Table

    table = Table(title=f"{root}  ({len(entries)} runs and sweeps)" if root else None)
    for column, justify, width in (
        ("experiment", "left", 8),
        ("id", "left", 23),
        ("algorithm", "left", 4),
        ("status", "left", 8),
        ("steps", "right", 5),
        ("final loss", "right", 9),
        ("wall time", "right", 6),
    ):
        table.add_column(column, justify=justify, no_wrap=True, min_width=width)
    table.add_column("differs", ratio=1)
    for e in entries:
        status = e.get("status") or "-"
        style = _STATUS_STYLE.get(status, "")
        differs = e.get("differs") or {}
        if e["kind"] == "sweep":
            text = "sweep over " + ", ".join(differs) if differs else "sweep"
            steps = f"{e['steps']} points"
        else:
            text = " ".join(f"{k}={format_value(v)}" for k, v in differs.items())
            steps = _number(e.get("steps"), "d")
        table.add_row(
            e["experiment"],
            e["id"],
            e.get("algorithm") or "-",
            f"[{style}]{status}[/]" if style else status,
            steps,
            _number(e.get("final_loss"), ".4g"),
            _duration(e.get("wall_time")),
            text,
        )
    _console(console).print(table)


def print_comparison_table(keys, rows, console=None):
    """Print :func:`comparison_rows` as a rich table: one row per group of seeds."""
    from rich.table import Table

    table = Table(caption="final loss: mean ± std over the group's runs (min, max: --json)")
    for key in keys:
        table.add_column(key, justify="right", no_wrap=True)
    for column in ("runs", "seeds", "status", "final loss", "steps", "wall time"):
        table.add_column(
            column, justify="right" if column != "status" else "left", no_wrap=column != "seeds"
        )
    for row in rows:
        mean, std = row["final_loss_mean"], row["final_loss_std"]
        loss = "-"
        if mean is not None:
            loss = f"{mean:.4g}"
            if row["n_runs"] > 1:
                loss += f" ± {std:.2g}"
        statuses = ", ".join(f"{n} {s}" for s, n in sorted(row["statuses"].items()))
        table.add_row(
            *(format_value(row[k]) for k in keys),
            str(row["n_runs"]),
            " ".join(str(s) for s in row["seeds"]),
            statuses,
            loss,
            _number(row["steps_mean"], ".0f"),
            _duration(row["wall_time_mean"]),
        )
    _console(console).print(table)


def save_comparison(runs, out=None, key="loss"):
    """Draw :func:`plot_comparison` of ``runs`` and write it as a PNG; return its path.

    ``out`` defaults to ``<folder>/plots/compare_<key>.png`` where ``<folder>`` is the
    experiment folder all the runs are in (the sweep folder for the runs of one sweep),
    else ``compare_<key>.png`` in the working directory.
    """
    from .analysis import save_figures

    _, groups = compare(runs)
    figure = plot_comparison(groups, key)
    if out is not None:
        out = Path(out)
        directory, stem = out.parent, out.name.removesuffix(".png")
    else:
        parents = {Path(run.path).parent for run in runs}
        stem = f"compare_{key}"
        directory = Path(".")
        if len(parents) == 1:
            parent = parents.pop()
            is_sweep = parent.name == "runs" and (parent.parent / "sweep.json").is_file()
            directory = (parent.parent if is_sweep else parent) / "plots"
    directory.mkdir(parents=True, exist_ok=True)
    return save_figures({stem: figure}, directory)[0]
