"""Stopper plugin ``solved``: end the run when the algorithm reports it is done."""

from core.components import Stopper

__all__ = ["Solved"]


class Solved(Stopper):
    """Stop once the algorithm's ``done`` is True (a convex program solved and certified)."""

    name = "solved"

    def should_stop(self, ctx):
        return "solved" if getattr(ctx.algorithm, "done", False) else None
