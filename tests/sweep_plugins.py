"""A test plugin for sweeps (registered via RELULAB_PLUGINS): a point that kills its process.

``toy_killer`` is ``toy_sgd`` (tests/toy_plugins.py) that sends itself SIGKILL at step
``die_at``, as an out-of-memory kill or a segfault would end a worker process.
"""

import os
import signal

from toy_plugins import ToySGD

from core.hookspecs import hookimpl
from core.params import Param


class ToyKiller(ToySGD):
    """toy_sgd whose process dies (SIGKILL) at a given step."""

    name = "toy_killer"
    params = ToySGD.params + (Param("die_at", int, -1, "step at which to SIGKILL the process"),)

    def step(self):
        super().step()
        if self.t == self.die_at:
            os.kill(os.getpid(), signal.SIGKILL)


@hookimpl
def relulab_algorithms():
    return [ToyKiller]
