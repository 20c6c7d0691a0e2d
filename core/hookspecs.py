"""All pluggy hook specifications of relulab, in one place.

A plugin is a module (or object) with functions marked ``@hookimpl`` named like the
specs below; each returns a list of :class:`core.components.Component` subclasses of
one kind (:data:`core.kinds.KIND_TABLE` says which). Built-in plugins (``plugins/``)
are registered exactly like third-party packages, which declare themselves in the
entry-point group ``relulab``::

    [project.entry-points.relulab]
    my_plugin = "my_package.relulab_plugin"
"""

import pluggy

__all__ = ["hookspec", "hookimpl", "PROJECT", "ENTRY_POINT_GROUP"]

PROJECT = "relulab"
ENTRY_POINT_GROUP = "relulab"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def relulab_algorithms():
    """Return a list of :class:`core.components.Algorithm` subclasses."""


@hookspec
def relulab_datasets():
    """Return a list of :class:`core.components.DataSet` subclasses."""


@hookspec
def relulab_inits():
    """Return a list of :class:`core.components.Init` subclasses."""


@hookspec
def relulab_stoppers():
    """Return a list of :class:`core.components.Stopper` subclasses."""


@hookspec
def relulab_loggers():
    """Return a list of :class:`core.components.Logger` subclasses."""


@hookspec
def relulab_savers():
    """Return a list of :class:`core.components.Saver` subclasses."""


@hookspec
def relulab_metrics():
    """Return a list of :class:`core.components.Metric` subclasses."""


@hookspec
def relulab_plots():
    """Return a list of :class:`core.components.Plot` subclasses."""


@hookspec
def relulab_indicators():
    """Return a list of :class:`core.components.Indicator` subclasses."""


@hookspec
def relulab_sweep_analyses():
    """Return a list of :class:`core.components.SweepAnalysis` subclasses."""


@hookspec
def relulab_proxes():
    """Return a list of :class:`core.components.Prox` subclasses."""


@hookspec
def relulab_distances():
    """Return a list of :class:`core.components.Distance` subclasses."""


@hookspec
def relulab_solvers():
    """Return a list of :class:`core.components.Solver` subclasses."""


@hookspec
def relulab_optimizers():
    """Return a list of :class:`core.components.Optimizer` subclasses."""


@hookspec
def relulab_schedules():
    """Return a list of :class:`core.components.Schedule` subclasses."""
