"""Logger ``live``: show the run in a window while it trains (``runner.py --live``).

The window belongs to a separate viewer process (:mod:`core.live`) drawing the picture
``plot.py --animate`` renders (:class:`core.animation.RunView`). This logger only hands
it the algorithm's state: after every step it notes the loss (two list appends) and,
at most ``refresh_per_second`` times a second and only when the viewer is ready for
more, sends the network and the losses since the last message. The time spent sending
is measured and kept under ``budget`` of the loop's time (a big network is sent less
often). The viewer draws at a lower priority, at most a quarter of the time
(:data:`core.live.SHARE`), so on a busy machine the loop keeps the processors and
the view updates less often. Measured on the 2-core development machine (under a load
of about 14): 0.5 us a step while nothing is due, 0.1-0.4 % of the loop's time in
sends, the loop's CPU time and wall time unchanged within the machine's noise.

The run's config records the logger (``loggers.live``), so ``--resume`` shows the view
again; ``--resume RUN loggers.live=None`` drops it. At the end of the run the last
state waits for the viewer (at most a minute); the window then stays open, titled with
the run's status, until it is closed.

Without a display (no ``DISPLAY`` on Linux, or a non-interactive matplotlib backend)
it prints one line and the run goes on with the terminal view. ``file=True`` draws
into ``RUN/plots/live.png`` instead of a window, which needs no display (watch it with
an image viewer that reloads, e.g. over a shared file system).
"""

import os
import select
import sys
import time

import numpy as np

from core.components import Logger
from core.hookspecs import hookimpl
from core.params import Param

__all__ = ["Live"]

_FINAL_WAIT = 60.0  # seconds the last state waits for a busy (living) viewer
_SENT = frozenset({"W", "a", "p"})  # state arrays the view draws
_MAX_PENDING = 200_000  # losses kept for a viewer not ready yet; beyond, every other one


class Live(Logger):
    """Live view of the run in a window (or RUN/plots/live.png), from a separate process."""

    name = "live"
    params = (
        Param("refresh_per_second", float, 4.0, "most updates a second", low=0, low_open=True),
        Param(
            "budget",
            float,
            0.02,
            "most fraction of the loop's time spent handing the state over",
            low=0,
            low_open=True,
            high=1,
        ),
        Param("trail", int, 8, "earlier states each neuron's trail reaches back", low=0),
        Param("file", bool, False, "draw into RUN/plots/live.png instead of a window"),
    )

    def setup(self, ctx):
        from core import live

        self._proc = self._viewer = None
        self._steps, self._losses = [], []
        self._ready = False
        self._next = 0.0
        self.spent = 0.0  # seconds of the loop spent in sending (measured)
        self.sent = 0
        reason = None if self.file else live.display_problem()
        if reason is not None:
            print(f"live view: {reason}; the run goes on with the terminal view", file=sys.stderr)
            return
        self._proc = live.spawn(ctx.run_dir, file=self.file, trail=self.trail)
        self._fd = self._proc.stdout.fileno()

    def _poll(self, timeout=0.0):
        """Whether the viewer is ready for a message; drop it if it has gone."""
        if self._ready:
            return True
        if select.select([self._fd], [], [], timeout)[0]:
            if os.read(self._fd, 4096):
                self._ready = True
            else:  # the viewer ended (window closed, or no window could open)
                self._drop()
        return self._ready

    def _send(self, ctx, final=False):
        from core.live import encode

        state = {k: np.asarray(v) for k, v in ctx.algorithm.state().items() if k in _SENT}
        message = {
            "step": ctx.step,
            "loss": ctx.loss,
            "steps": np.asarray(self._steps, dtype=np.int64),
            "losses": np.asarray(self._losses, dtype=float),
            **state,
        }
        if final:
            message["status"] = str(ctx.status or "ended")
        self._steps, self._losses = [], []
        try:
            self._proc.stdin.write(encode(message))
            self._proc.stdin.flush()
        except (BrokenPipeError, OSError):
            self._drop()
            return
        self._ready = False
        self.sent += 1

    def observe(self, ctx):
        if self._proc is None:
            return
        self._steps.append(ctx.step)
        self._losses.append(ctx.loss)
        if len(self._steps) > _MAX_PENDING:
            self._steps, self._losses = self._steps[1::2], self._losses[1::2]
        if ctx.final:
            deadline = time.perf_counter() + _FINAL_WAIT
            while self._proc is not None and time.perf_counter() < deadline:
                if self._poll(timeout=0.1):
                    self._send(ctx, final=True)
                    break
                if self._proc is not None and self._proc.poll() is not None:
                    self._drop()
            return
        start = time.perf_counter()
        if start < self._next:
            return
        if self._poll():
            self._send(ctx)
        cost = time.perf_counter() - start
        self.spent += cost
        self._next = start + max(1.0 / self.refresh_per_second, cost / self.budget)

    def _drop(self):
        """Forget the viewer: close our ends of its pipes (it may live on, showing)."""
        proc, self._proc, self._ready = self._proc, None, False
        if proc is None:
            return
        for stream in (proc.stdin, proc.stdout):
            try:
                stream.close()
            except OSError:
                pass
        self._viewer = proc

    def close(self, ctx):
        """End of the run: the viewer sees end of file; a file viewer is waited for."""
        self._drop()
        if self.file and self._viewer is not None:
            try:
                self._viewer.wait(timeout=_FINAL_WAIT)
            except Exception:  # noqa: BLE001 - a stuck viewer must not fail the run
                pass


@hookimpl
def relulab_loggers():
    return [Live]
