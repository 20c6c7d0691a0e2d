"""Stoppers: max steps, wall time, loss threshold, gradient norm, divergence."""

import math

from core.components import Stopper
from core.hookspecs import hookimpl
from core.params import Param


class MaxSteps(Stopper):
    """Stop after a number of outer steps."""

    name = "max_steps"
    params = (Param("steps", int, 1000, "number of outer steps", low=0),)

    def should_stop(self, ctx):
        return "max_steps" if ctx.step >= self.steps else None

    def progress(self, ctx):
        return ctx.step / self.steps if self.steps else 1.0


class WallTime(Stopper):
    """Stop after a wall-clock budget (seconds of stepping, summed over resumes)."""

    name = "wall_time"
    params = (Param("seconds", float, 3600.0, "budget in seconds", low=0),)

    def should_stop(self, ctx):
        return "wall_time" if ctx.elapsed >= self.seconds else None

    def progress(self, ctx):
        return ctx.elapsed / self.seconds if self.seconds else 1.0


class LossThreshold(Stopper):
    """Stop once the training loss is at or below a threshold."""

    name = "loss_threshold"
    params = (Param("value", float, 1e-8, "loss threshold", low=0),)

    def should_stop(self, ctx):
        return "loss_threshold" if ctx.loss <= self.value else None


class GradNorm(Stopper):
    """Stop once the algorithm's reported ``grad_norm`` scalar is at or below a threshold."""

    name = "grad_norm"
    params = (Param("threshold", float, 1e-9, "gradient-norm threshold", low=0),)

    def should_stop(self, ctx):
        g = ctx.algorithm.scalars().get("grad_norm")
        return "grad_norm" if g is not None and g <= self.threshold else None


class Divergence(Stopper):
    """Mark the run diverged when the loss exceeds a bound (non-finite always is)."""

    name = "divergence"
    status = "diverged"
    params = (Param("max_loss", float, 1e12, "largest acceptable loss", low=0, low_open=True),)

    def should_stop(self, ctx):
        if not math.isfinite(ctx.loss):
            return f"non-finite loss ({ctx.loss})"
        if ctx.loss > self.max_loss:
            return f"loss {ctx.loss:.3e} above max_loss {self.max_loss:.3e}"
        return None


@hookimpl
def relulab_stoppers():
    return [MaxSteps, WallTime, LossThreshold, GradNorm, Divergence]
