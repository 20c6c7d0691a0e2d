"""The plugin kinds, declared once.

Each :class:`Kind` says what base class its pieces derive from, which pluggy hook
returns them (its spec lives in :mod:`core.hookspecs`) and where a config selects
them: ``section`` names the config key and ``several`` says whether the section
holds one plugin (``{"name": ..., **params}``) or several (``{name: params}``).
Kinds without a section are chosen otherwise: by another plugin's parameter
(``prox``, ``distance``, ``solver``, ``metric``,
``optimizer``, ``schedule``), or all at once by :mod:`core.analysis` (``plot``,
``indicator``) and :mod:`core.sweep` (``sweep_analysis``).

Adding a kind is one entry here, its base class in :mod:`core.components` and its
hookspec; ``tests/core/test_kinds.py`` walks this table, so a kind missing
anywhere fails.

Examples
--------
>>> KIND["stopper"].section, KIND["stopper"].several
('stoppers', True)
>>> [k.name for k in KIND_TABLE if k.section and not k.several]
['algorithm', 'data', 'init']
"""

from dataclasses import dataclass

from . import components as c

__all__ = ["Kind", "KIND_TABLE", "KIND", "KINDS", "config_sections"]


@dataclass(frozen=True)
class Kind:
    """One plugin kind.

    Attributes
    ----------
    name : str
        The kind (``"algorithm"``), equal to ``base.kind``.
    base : type
        The :class:`core.components.Component` subclass its pieces derive from.
    hook : str
        The pluggy hook returning the kind's classes (``"relulab_algorithms"``).
    section : str or None
        Config key selecting the kind's plugins, None when no config section does.
    several : bool
        Whether the section holds several plugins (``name -> params``) or one.
    """

    name: str
    base: type
    hook: str
    section: str | None = None
    several: bool = False


KIND_TABLE = (
    Kind("algorithm", c.Algorithm, "relulab_algorithms", "algorithm"),
    Kind("data", c.DataSet, "relulab_datasets", "data"),
    Kind("init", c.Init, "relulab_inits", "init"),
    Kind("stopper", c.Stopper, "relulab_stoppers", "stoppers", several=True),
    Kind("logger", c.Logger, "relulab_loggers", "loggers", several=True),
    Kind("saver", c.Saver, "relulab_savers", "savers", several=True),
    Kind("metric", c.Metric, "relulab_metrics"),
    Kind("plot", c.Plot, "relulab_plots"),
    Kind("indicator", c.Indicator, "relulab_indicators"),
    Kind("sweep_analysis", c.SweepAnalysis, "relulab_sweep_analyses"),
    Kind("prox", c.Prox, "relulab_proxes"),
    Kind("distance", c.Distance, "relulab_distances"),
    Kind("solver", c.Solver, "relulab_solvers"),
    Kind("optimizer", c.Optimizer, "relulab_optimizers"),
    Kind("schedule", c.Schedule, "relulab_schedules"),
)

KIND = {kind.name: kind for kind in KIND_TABLE}
"""Kind by name."""

KINDS = tuple(KIND)
"""Kind names, in table order."""


def config_sections(several=None):
    """The kinds a config selects by section (only single or only several ones)."""
    return [k for k in KIND_TABLE if k.section and (several is None or k.several == several)]
