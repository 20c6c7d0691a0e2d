"""Built-in relulab plugins.

Each module listed in :data:`BUILTIN_PLUGINS` is registered with the plugin manager
exactly like a third-party package of the ``relulab`` entry-point group. A module
must import without its optional extras (import torch / cvxpy / ot lazily, inside
the methods that need them, and declare ``requires`` / ``extra`` on the class).
"""

BUILTIN_PLUGINS = (
    "plugins.stoppers",
    "plugins.loggers",
    "plugins.tracking",
    "plugins.savers",
    "plugins.metrics",
    "plugins.data",
    "plugins.realdata",
    "plugins.inits",
    "plugins.gd",
    "plugins.jko",
    "plugins.proxpoint",
    "plugins.convex",
    "plugins.population",
    "plugins.plots",
    "plugins.live",
    "plugins.indicators",
    "plugins.sweep_analyses",
    "plugins.dynamics",
    "plugins.optimizers",
)
