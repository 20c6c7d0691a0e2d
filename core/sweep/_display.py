"""Live progress of a sweep: points done / running / failed / left with an ETA.

A rich progress bar on a terminal, plain lines elsewhere (every ``plain_every``
seconds while something changes). Errors are printed the moment they are seen,
above the bar.
"""

import sys
import time

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

__all__ = ["SweepDisplay", "format_seconds"]


def format_seconds(seconds):
    """``1:02:03`` / ``2:03``, or ``-`` when unknown."""
    if seconds is None or seconds != seconds or seconds == float("inf"):
        return "-"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class SweepDisplay:
    """Progress of a sweep.

    Parameters
    ----------
    mode : {"auto", "live", "plain", "off"}
        ``auto`` is ``live`` on a terminal and ``plain`` elsewhere; ``off`` still
        prints errors and the final summary.
    title : str
    total : int
        Number of points in the sweep.
    plain_every : float
        Seconds between progress lines in ``plain`` mode.
    """

    def __init__(self, mode="auto", title="sweep", total=0, plain_every=10.0):
        self.console = Console(stderr=True)
        if mode == "auto":
            mode = "live" if self.console.is_terminal else "plain"
        self.mode = mode
        self.title = title
        self.total = total
        self.plain_every = plain_every
        self._progress = None
        self._task = None
        self._t0 = time.perf_counter()
        self._base = 0
        self._last_plain = None
        self._last_text = None

    def start(self, counts):
        self._t0 = time.perf_counter()
        self._base = counts.get("done", 0) + counts.get("failed", 0)
        if self.mode == "live":
            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                TextColumn("{task.fields[text]}"),
                TimeElapsedColumn(),
                console=self.console,
                refresh_per_second=4,
            )
            self._progress.start()
            self._task = self._progress.add_task(self.title, total=self.total or None, text="")
        self.update(counts, force=True)

    def eta(self, counts):
        """Seconds left, from this session's rate of completed points."""
        completed = counts.get("done", 0) + counts.get("failed", 0) - self._base
        if completed <= 0:
            return None
        rate = completed / (time.perf_counter() - self._t0)
        return counts.get("left", 0) / rate

    def text(self, counts):
        return (
            f"{counts.get('done', 0)} done, {counts.get('running', 0)} running, "
            f"{counts.get('failed', 0)} failed, {counts.get('left', 0)} left, "
            f"eta {format_seconds(self.eta(counts))}"
        )

    def update(self, counts, force=False):
        text = self.text(counts)
        if self.mode == "live" and self._progress is not None:
            self._progress.update(
                self._task, text=text, completed=counts.get("done", 0) + counts.get("failed", 0)
            )
        elif self.mode == "plain":
            now = time.perf_counter()
            due = self._last_plain is None or now - self._last_plain >= self.plain_every
            if force or (due and text != self._last_text):
                self._last_plain, self._last_text = now, text
                print(f"[{self.title}] {text}", file=sys.stderr, flush=True)

    def event(self, message):
        """Print a line now (an error, an interruption), above the bar."""
        if self._progress is not None:
            self._progress.console.print(message, markup=False, highlight=False)
        else:
            print(message, file=sys.stderr, flush=True)

    def stop(self):
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
