"""A sweep folder as the ``sweep_analysis`` plugins see it, and how their output lands.

:class:`SweepResults` gives an analysis the sweep's spec, its points, the summary
rows and seed groups of :func:`core.sweep.summarize_sweep` (computed on first use)
and the finished runs, grouped by cell. :func:`analyse_sweep` writes every
applicable analysis's tables into the sweep folder; :func:`draw_sweep_analyses`
collects their figures.
"""

import json
import re
from pathlib import Path

from ..errors import PluginError
from ..registry import get_registry
from ..store import Run, atomic_write_bytes, atomic_write_json
from ._aggregate import summarize_sweep
from ._folder import DONE_STATUSES, SWEEP_FILE, csv_text, load_sweep, read_meta

__all__ = ["SweepResults", "analyse_sweep", "draw_sweep_analyses", "RESERVED_FILES"]

RESERVED_FILES = (SWEEP_FILE, "config.json", "config.py", "summary.csv", "groups.csv", "status.csv")
"""Files of a sweep folder no analysis may write."""

_FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*\.(csv|json|txt)$")


def _label(value):
    return f"{value:g}" if isinstance(value, float) else str(value)


class SweepResults:
    """Read-only view of a sweep folder for :class:`core.components.SweepAnalysis`.

    Parameters
    ----------
    path : path
        The sweep folder.
    rows, groups : list of dict, optional
        Output of :func:`core.sweep.summarize_sweep` when the caller already has it.
    registry : core.registry.Registry, optional
        Passed to :func:`summarize_sweep` when the rows are computed here.

    Attributes
    ----------
    path : Path
    spec : dict
        The sweep section (``grid``, ``zip``, ``seeds``, ``success``).
    keys : list of str
        The swept config keys (dotted), grid keys then zip keys.
    points : list of dict
        ``sweep.json``'s points (``index``, ``id``, ``run``, ``overrides``, ``seed``).
    config : dict
        The sweep's resolved base config (``config.json``).
    """

    def __init__(self, path, rows=None, groups=None, registry=None):
        self.path = Path(path)
        sweep = load_sweep(self.path)
        self.spec = sweep["spec"]
        self.keys = list(sweep["keys"])
        self.points = list(sweep["points"])
        self.config = json.loads((self.path / "config.json").read_text())
        self._rows, self._groups, self._registry = rows, groups, registry

    def __repr__(self):
        return f"SweepResults({str(self.path)!r})"

    def _summarize(self):
        rows, groups = summarize_sweep(self.path, self._registry, indicators=False, write=False)
        self._rows = rows
        if self._groups is None:  # groups given by the caller are kept
            self._groups = groups

    @property
    def rows(self):
        """One dict per point (see :func:`core.sweep.summarize_sweep`)."""
        if self._rows is None:
            self._summarize()
        return self._rows

    @property
    def groups(self):
        """One dict per cell of swept values, statistics over seeds."""
        if self._groups is None:
            self._summarize()
        return self._groups

    @property
    def algorithm(self):
        """Name of the base config's algorithm."""
        return self.config["algorithm"]["name"]

    def values(self, point):
        """The swept values of a point, ``{dotted key: value}``."""
        return {k: point["overrides"][k] for k in self.keys}

    def label(self, values):
        """A short legend label for a cell, ``"model.width=20, data.d=5"``."""
        return ", ".join(f"{k}={_label(values[k])}" for k in self.keys) or "all runs"

    def runs(self, statuses=DONE_STATUSES):
        """``[(point, Run)]`` of the points whose status is in ``statuses``, in point order."""
        out = []
        for point in self.points:
            run_path = self.path / point["run"]
            meta = read_meta(run_path)
            if meta is not None and meta.get("status") in statuses:
                out.append((point, Run(run_path)))
        return out

    def cells(self, statuses=DONE_STATUSES):
        """``[(values, [Run, ...])]``: the runs of :meth:`runs` grouped by swept values."""
        cells = {}
        for point, run in self.runs(statuses):
            values = self.values(point)
            key = json.dumps([values[k] for k in self.keys], sort_keys=True)
            cells.setdefault(key, (values, []))[1].append(run)
        return list(cells.values())


def _applicable(results, registry):
    return [a for a in registry.build_all("sweep_analysis") if a.applies(results)]


def _encode(name, content, owner):
    if not _FILE_NAME.match(name) or name in RESERVED_FILES:
        raise PluginError(
            f"sweep analysis {owner!r} returned the table name {name!r}; use a plain "
            f"*.csv, *.json or *.txt file name other than {', '.join(RESERVED_FILES)}"
        )
    if name.endswith(".csv"):
        if not isinstance(content, list):
            raise PluginError(f"sweep analysis {owner!r}: {name} must be a list of dicts")
        return csv_text(content).encode()
    if name.endswith(".json"):
        return None  # written by atomic_write_json, through json_safe
    return str(content).encode()


def analyse_sweep(results, registry=None):
    """Write the tables of every applicable sweep analysis into the sweep folder.

    Parameters
    ----------
    results : SweepResults or path
    registry : core.registry.Registry, optional

    Returns
    -------
    paths : list of Path
        The files written.

    Raises
    ------
    core.errors.PluginError
        Two analyses writing the same file, or a name outside ``*.csv`` /
        ``*.json`` / ``*.txt`` or among :data:`RESERVED_FILES`.
    """
    from ..analysis import json_safe

    registry = registry or get_registry()
    if not isinstance(results, SweepResults):
        results = SweepResults(results, registry=registry)
    owners, paths = {}, []
    for analysis in _applicable(results, registry):
        for name, content in analysis.tables(results).items():
            if name in owners:
                raise PluginError(
                    f"sweep analyses {owners[name]!r} and {analysis.name!r} both write {name!r}"
                )
            owners[name] = analysis.name
            data = _encode(name, content, analysis.name)
            path = results.path / name
            if data is None:
                atomic_write_json(path, json_safe(content))
            else:
                atomic_write_bytes(path, data)
            paths.append(path)
    return paths


def draw_sweep_analyses(results, registry=None):
    """Figures of every applicable sweep analysis, ``{stem: Figure}``.

    Raises
    ------
    core.errors.PluginError
        Two analyses drawing the same stem.
    """
    registry = registry or get_registry()
    if not isinstance(results, SweepResults):
        results = SweepResults(results, registry=registry)
    figures, owners = {}, {}
    for analysis in _applicable(results, registry):
        for stem, figure in analysis.draw(results).items():
            if stem in figures:
                raise PluginError(
                    f"sweep analyses {owners[stem]!r} and {analysis.name!r} both draw {stem!r}"
                )
            figures[stem], owners[stem] = figure, analysis.name
    return figures
