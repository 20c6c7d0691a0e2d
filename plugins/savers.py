"""Savers: when the trace and checkpoint are made durable."""

from core.components import Saver
from core.hookspecs import hookimpl
from core.params import Param


class Periodic(Saver):
    """Save every N seconds and/or every N steps (the final save always happens)."""

    name = "periodic"
    params = (
        Param("every_seconds", float, 30.0, "seconds between saves (0: off)", low=0),
        Param("every_steps", int, 0, "steps between saves (0: off)", low=0),
        Param("checkpoint", bool, True, "also write the algorithm state for --resume"),
    )

    def __init__(self, **params):
        super().__init__(**params)
        self.checkpoint = params.get("checkpoint", True)

    def should_save(self, ctx):
        if self.every_steps and ctx.since_save_steps >= self.every_steps:
            return True
        return bool(self.every_seconds) and ctx.since_save_seconds >= self.every_seconds


@hookimpl
def relulab_savers():
    return [Periodic]
