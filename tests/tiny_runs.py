"""Tiny saved runs for the post-processing tests (plots, indicators, their CLIs).

``make_run(runs_dir, dim=1, bias=True, ...)`` trains ``toy_sgd`` (tests/toy_plugins.py)
through the real loop on ``tiny_data``: 1-D inputs on a grid of [-1, 1] or Gaussian
inputs in ``dim`` dimensions, with or without the bias column, ``k`` outputs.
"""

import numpy as np

from core.components import Data, DataSet, Init
from core.config import resolve
from core.hookspecs import hookimpl
from core.loop import start_run
from core.params import Param
from core.registry import Registry

BUILTINS = [
    "plugins.stoppers",
    "plugins.loggers",
    "plugins.savers",
    "plugins.metrics",
    "plugins.plots",
    "plugins.indicators",
    "toy_plugins",
    "tiny_runs",
]


class TinyData(DataSet):
    """``n`` points, 1-D on a grid (``dim == 1``) or Gaussian; targets sin(3 sum x + j)."""

    name = "tiny_data"
    params = (
        Param("n", int, 10, "points", low=1),
        Param("dim", int, 1, "input dimension, bias excluded", low=1),
        Param("bias", bool, True, "append a constant-1 column"),
        Param("k", int, 1, "outputs (1: Y has shape (n,))", low=1),
        Param("test", bool, False, "also make 5 test points"),
    )

    def _make(self, rng, n):
        x = np.linspace(-1.0, 1.0, n)[:, None] if self.dim == 1 else rng.normal(size=(n, self.dim))
        Y = np.sin(3 * x.sum(axis=1, keepdims=True) + np.arange(self.k))
        X = np.column_stack([x, np.ones(n)]) if self.bias else x
        return X, Y[:, 0] if self.k == 1 else Y

    def load(self, rng):
        X, Y = self._make(rng, self.n)
        X_test, Y_test = self._make(rng, 5) if self.test else (None, None)
        return Data(X, Y, X_test, Y_test, bias=self.bias)


class TinyInit(Init):
    """Gaussian first layer, second layer +-1 of shape (m,) or (m, k)."""

    name = "tiny_init"

    def initialize(self, d, m, k, rng):
        return rng.normal(size=(d, m)), rng.choice([-1.0, 1.0], size=m if k == 1 else (m, k))


@hookimpl
def relulab_datasets():
    return [TinyData]


@hookimpl
def relulab_inits():
    return [TinyInit]


def registry():
    """Loop plugins, plots, indicators and the toy pieces; no entry points."""
    return Registry(builtins=BUILTINS, entry_points=False)


def make_run(
    runs_dir,
    reg=None,
    *,
    dim=1,
    bias=True,
    k=1,
    n=10,
    width=6,
    steps=30,
    every=10,
    scaling="standard",
    test=False,
    experiment="tiny",
):
    """Train a tiny network and return its :class:`core.store.Run`.

    Snapshots at steps 0, ``every``, 2 ``every``... and the last step.
    """
    reg = reg or registry()
    config = {
        "experiment": experiment,
        "seed": 1,
        "model": {"width": width, "scaling": scaling},
        "data": {"name": "tiny_data", "n": n, "dim": dim, "bias": bias, "k": k, "test": test},
        "init": {"name": "tiny_init"},
        "algorithm": {"name": "toy_sgd", "lr": 0.02, "batch": n},
        "stoppers": {"max_steps": {"steps": steps}},
        "loggers": {
            "scalars": {"metrics": ["test_loss"] if test else []},
            "snapshots": {"every": every},
        },
        "savers": {"periodic": {"every_seconds": 0.0}},
        "run": {"display": "off"},
    }
    return start_run(resolve(config, reg), "", reg, runs_dir=runs_dir)
