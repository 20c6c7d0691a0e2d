"""relulab: the stable surface third-party code depends on.

A plugin package imports everything it needs from here, and from nothing else in
relulab (``core`` and ``plugins`` are the implementation and may be reorganised)::

    from relulab import Algorithm, Param, hookimpl, model

    class MyAlgorithm(Algorithm):
        '''One line shown by ``relulab plugins``.'''
        name = "my_algorithm"
        params = (Param("lr", float, 0.01, "step size", low=0, low_open=True),)
        ...

    @hookimpl
    def relulab_algorithms():
        return [MyAlgorithm]

Names (``__all__``)
-------------------
Component base classes, one per plugin kind
    :class:`Algorithm`, :class:`DataSet`, :class:`Init`, :class:`Stopper`,
    :class:`Logger`, :class:`Saver`, :class:`Metric`, :class:`Plot`,
    :class:`Indicator`, :class:`SweepAnalysis`, :class:`Prox`, :class:`Distance`,
    :class:`Solver`, :class:`Optimizer`, :class:`Schedule`.
What components receive
    :class:`Data` (returned by a data set), :class:`Problem` (given to
    ``Algorithm.setup``), :class:`LoopContext` (given to stoppers, loggers,
    savers), :class:`SweepResults` (given to sweep analyses).
Declaring plugins
    :class:`Param` (a declared parameter) and :data:`hookimpl` (the pluggy marker
    of the hooks ``relulab_algorithms``, ``relulab_datasets``, ...).
Reading runs and writing configs
    :func:`load_run` (a saved run: config, meta, scalars, snapshots) and
    :func:`merge` (deep-merge of config dicts).
Errors a user can fix (the command line prints them on one line, exit code 2)
    :class:`ConfigError`, :class:`PluginError`, :class:`RunStoreError`.
The math of the two-layer ReLU network
    :mod:`model` (:mod:`relulab.model`: forward, loss, closed-form gradient,
    activation patterns).

Examples
--------
>>> import relulab
>>> issubclass(relulab.PluginError, Exception)
True
>>> p = relulab.Param("lr", float, 0.1, "step size", low=0, low_open=True)
>>> relulab.merge({"model": {"width": 10, "scaling": "ntk"}}, {"model": {"width": 20}})
{'model': {'width': 20, 'scaling': 'ntk'}}
"""

from core.components import (
    Algorithm,
    Data,
    DataSet,
    Distance,
    Indicator,
    Init,
    Logger,
    LoopContext,
    Metric,
    Optimizer,
    Plot,
    Problem,
    Prox,
    Saver,
    Schedule,
    Solver,
    Stopper,
    SweepAnalysis,
)
from core.config import merge
from core.errors import ConfigError, PluginError, RunStoreError
from core.hookspecs import hookimpl
from core.params import Param
from core.store import load_run
from core.sweep import SweepResults

from . import model


def _version():
    import importlib.metadata

    try:
        return importlib.metadata.version("relulab")
    except importlib.metadata.PackageNotFoundError:
        return "dev"


__version__ = _version()

__all__ = [
    "Algorithm",
    "DataSet",
    "Init",
    "Stopper",
    "Logger",
    "Saver",
    "Metric",
    "Plot",
    "Indicator",
    "SweepAnalysis",
    "Prox",
    "Distance",
    "Solver",
    "Optimizer",
    "Schedule",
    "Data",
    "Problem",
    "LoopContext",
    "SweepResults",
    "Param",
    "hookimpl",
    "load_run",
    "merge",
    "ConfigError",
    "PluginError",
    "RunStoreError",
    "model",
]
