"""Live progress of a run: rich progress bar on a terminal, plain lines otherwise.

The loop calls :meth:`Display.update` after every step; it returns at once unless
``1 / refresh_per_second`` seconds have passed, so fast loops pay one clock read
per step and the screen is redrawn about ten times a second.
"""

import sys
import time

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

__all__ = ["Display"]


class Display:
    """Progress display.

    Parameters
    ----------
    mode : {"auto", "live", "plain", "off"}
        ``auto`` is ``live`` on a terminal and ``plain`` elsewhere.
    title : str
        Shown before the bar.
    refresh_per_second : float
    plain_every : float
        Seconds between lines in ``plain`` mode.
    """

    def __init__(self, mode="auto", title="run", refresh_per_second=10.0, plain_every=10.0):
        # a console only where it is used (making one costs more than a tiny run's step)
        self.console = Console(stderr=True) if mode in ("auto", "live") else None
        if mode == "auto":
            mode = "live" if self.console.is_terminal else "plain"
        self.mode = mode
        self.title = title
        self.interval = 1.0 / refresh_per_second
        self.plain_every = plain_every
        self._last = 0.0
        self._last_plain = 0.0
        self._progress = None
        self._task = None
        self._rate_mark = (time.perf_counter(), 0)  # (time, step): start of the rate window
        self._rate = None  # steps/s over the last full window

    def start(self, step=0):
        self._rate_mark = (time.perf_counter(), step)
        if self.mode == "live":
            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                TextColumn("{task.percentage:>5.1f}%"),
                TextColumn("step {task.fields[step]}"),
                TextColumn("loss {task.fields[loss]}"),
                TextColumn("{task.fields[rate]} steps/s"),
                TimeElapsedColumn(),
                TextColumn("eta"),
                TimeRemainingColumn(),
                console=self.console,
                refresh_per_second=1.0 / self.interval,
                transient=False,
            )
            self._progress.start()
            self._task = self._progress.add_task(
                self.title, total=None, step=step, loss="-", rate="-"
            )

    def update(self, step, loss, elapsed, fraction=None, force=False, now=None):
        """Refresh if the refresh interval has passed (or ``force``).

        ``fraction``: progress in [0, 1], None, or a callable returning either (called
        only when the display redraws). ``now``: the caller's ``time.perf_counter()``
        reading, if it has one.
        """
        if self.mode == "off" and not force:
            return
        if now is None:
            now = time.perf_counter()
        if not force and now - self._last < self.interval:
            return
        self._last = now
        if callable(fraction):
            fraction = fraction()
        t0, s0 = self._rate_mark
        window = (step - s0) / (now - t0) if now > t0 else 0.0
        if now - t0 > 2.0 and step > s0:  # a full window: keep its rate, start the next
            self._rate, self._rate_mark = window, (now, step)
        rate = window if self._rate is None else self._rate
        if self.mode == "live" and self._progress is not None:
            kwargs = {"step": step, "loss": f"{loss:.4e}", "rate": f"{rate:,.1f}"}
            if fraction is not None:
                self._progress.update(self._task, total=1.0, completed=min(fraction, 1.0), **kwargs)
            else:
                self._progress.update(self._task, **kwargs)
        elif self.mode == "plain" and (force or now - self._last_plain >= self.plain_every):
            self._last_plain = now
            pct = "" if fraction is None else f" {100 * min(fraction, 1.0):5.1f}%"
            print(
                f"[{self.title}]{pct} step {step} loss {loss:.4e} "
                f"{rate:,.1f} steps/s elapsed {elapsed:.1f}s",
                file=sys.stderr,
                flush=True,
            )

    def stop(self):
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
