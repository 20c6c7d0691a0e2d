"""Loggers: per-step scalars, parameter snapshots and inner-loop records.

Cadences are stateless functions of the step (plus the last logged step), so a
resumed run logs exactly the steps an uninterrupted one would.
"""

import math

import numpy as np

from core.components import Logger
from core.errors import PluginError
from core.hookspecs import hookimpl
from core.params import Param

__all__ = ["Scalars", "Snapshots", "Records", "on_cadence", "chosen_plugins"]


def on_cadence(step, every=0, per_decade=0):
    """Whether ``step`` is logged: a multiple of ``every``, or a new log-spaced bin.

    With ``per_decade = p``, step ``t`` is logged when ``floor(p log10 t)`` differs
    from ``floor(p log10 (t-1))``: about ``p`` steps per decade, all small steps.
    Step 0 is always logged.
    """
    if step == 0:
        return True
    if every and step % every == 0:
        return True
    if per_decade:
        if step == 1:
            return True
        return math.floor(per_decade * math.log10(step)) != math.floor(
            per_decade * math.log10(step - 1)
        )
    return False


class _Cadenced(Logger):
    def setup(self, ctx):
        self.last = None

    def due(self, ctx):
        if ctx.final:
            return ctx.step != self.last
        return ctx.step != self.last and on_cadence(
            ctx.step, self.every, getattr(self, "per_decade", 0)
        )

    def observe(self, ctx):
        if self.due(ctx):
            self.record(ctx)
            self.last = ctx.step

    def state_dict(self):
        return {"last": self.last}

    def load_state_dict(self, state):
        self.last = state.get("last")


class Scalars(_Cadenced):
    """Record loss, elapsed time, the algorithm's scalars and chosen metrics."""

    name = "scalars"
    params = (
        Param("every", int, 1, "log every k steps (0: only log-spaced/first/last)", low=0),
        Param("per_decade", int, 0, "also log ~this many log-spaced steps per decade", low=0),
        Param(
            "metrics",
            (list, dict),
            [],
            "metrics computed at each logged step: names, or name -> parameters",
            plugin_kind="metric",
        ),
    )

    def setup(self, ctx):
        super().setup(ctx)
        from core.registry import get_registry

        registry = ctx.registry or get_registry()
        self._metrics = [
            registry.build("metric", name, params, owner=f"loggers.scalars.metrics.{name}")
            for name, params in chosen_plugins(self.metrics).items()
        ]

    def record(self, ctx):
        row = {"step": ctx.step, "loss": ctx.loss, "elapsed": ctx.elapsed}
        row.update(ctx.algorithm.scalars())
        for metric in self._metrics:
            values = metric.compute(ctx.algorithm, ctx.problem)
            taken = row.keys() & values.keys()
            if taken:
                raise PluginError(
                    f"metric {metric.name!r} logs {sorted(taken)[0]!r}, which "
                    "the scalars row already holds (the loop, the algorithm or "
                    "another metric logs it)"
                )
            row.update(values)
        ctx.trace.append("scalars", row)

    def state_dict(self):
        """The last logged step and the state of each metric that keeps one."""
        metrics = {m.name: m.state_dict() for m in self._metrics}
        return {**super().state_dict(), "metrics": {k: v for k, v in metrics.items() if v}}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        saved = state.get("metrics") or {}
        for metric in self._metrics:
            if metric.name in saved:
                metric.load_state_dict(saved[metric.name])


def chosen_plugins(value):
    """``{name: parameters}`` of a parameter naming plugins: a list of names or a dict.

    A list of names gives each its defaults (``{}``); in a dict, ``None`` or ``True``
    stands for ``{}``.

    Examples
    --------
    >>> chosen_plugins(["test_loss"])
    {'test_loss': {}}
    >>> chosen_plugins({"n_patterns": {"data": "test"}, "test_loss": None})
    {'n_patterns': {'data': 'test'}, 'test_loss': {}}
    """
    if isinstance(value, dict):
        return {
            name: {} if params is None or params is True else params
            for name, params in value.items()
        }
    return {name: {} for name in value}


class Snapshots(_Cadenced):
    """Record the algorithm's state arrays (the network) every k or log-spaced steps."""

    name = "snapshots"
    params = (
        Param("every", int, 100, "snapshot every k steps (0: only log-spaced/first/last)", low=0),
        Param("per_decade", int, 0, "also snapshot ~this many log-spaced steps per decade", low=0),
    )

    def record(self, ctx):
        state = {k: np.asarray(v) for k, v in ctx.algorithm.state().items()}
        ctx.trace.append("snapshots", {"step": ctx.step, **state})


class Records(Logger):
    """Record the algorithm's inner-loop rows (prox / Sinkhorn iterations) every k steps."""

    name = "records"
    params = (Param("every", int, 1, "record the inner loop of every k-th step", low=1),)

    def observe(self, ctx):
        if ctx.final or ctx.step == 0 or ctx.step % self.every:
            return
        rows = ctx.algorithm.records()
        if not rows:
            return
        columns = {k: np.asarray(v) for k, v in rows.items()}
        length = len(next(iter(columns.values())))
        columns = {
            "step": np.full(length, ctx.step, dtype=np.int64),
            "inner": np.arange(length),
            **columns,
        }
        ctx.trace.append_columns("records", columns)


@hookimpl
def relulab_loggers():
    return [Scalars, Snapshots, Records]
