"""The live view of a running run: a window (or a PNG file) redrawn from its latest state.

The run's process (the ``live`` logger, :mod:`plugins.live`; ``runner.py --live``)
starts the viewer as a separate process (:func:`spawn`, running :func:`main`) and
writes the algorithm's state to the viewer's standard input, at most a few times a
second, as length-prefixed ``.npz`` messages (:func:`encode`, read back with
``allow_pickle=False``). The viewer answers one byte (:data:`READY`) on its standard
output each time it can take the next message, so the run never waits for a drawing
and messages never queue: the run's loop pays a clock read per step, and a copy of
the state when the viewer is ready.

The viewer draws :class:`core.animation.RunView` (the picture ``plot.py --animate``
renders) into a pyplot window, or with ``--file`` into ``RUN/plots/live.png``
(replaced atomically at each update; no display needed). When the run ends the window
stays open, titled with the run's status, until it is closed. Ctrl-C in the terminal
stops the run, not the window.
"""

import argparse
import io
import os
import select
import signal
import struct
import subprocess
import sys
import time
from collections import deque
from pathlib import Path

import numpy as np

__all__ = [
    "READY",
    "encode",
    "read_message",
    "read_exact",
    "display_problem",
    "non_interactive",
    "spawn",
    "main",
]

READY = b"\x01"
"""The byte the viewer writes when it can take the next message."""

_HEADER = struct.Struct(">Q")
_MAX_HISTORY = 50_000  # loss points the viewer keeps; older ones are thinned
SHARE = 0.25
"""Most fraction of the time the viewer spends drawing: after a drawing that took ``t``
seconds (wall clock) it asks for the next state no sooner than ``t / SHARE`` seconds
after it began. It also runs at a lower priority (``nice`` 10) with one BLAS thread, so
on a busy machine the run's loop keeps the processors."""
NICE = 10
_ONE_THREAD = {name: "1" for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
_LAUNCH = "import sys; sys.path.insert(0, sys.argv[1]); from core.live import main; sys.exit(main(sys.argv[2:]))"  # noqa: E501


def encode(arrays):
    """One message: an 8-byte big-endian length, then the arrays as ``.npz`` bytes.

    Examples
    --------
    >>> message = encode({"step": np.int64(3), "W": np.zeros((2, 4))})
    >>> read_message(io.BytesIO(message).read)["step"]
    array(3)
    """
    buffer = io.BytesIO()
    np.savez(buffer, **{k: np.asarray(v) for k, v in arrays.items()})
    body = buffer.getvalue()
    return _HEADER.pack(len(body)) + body


def read_exact(read, n):
    """``n`` bytes from ``read(k)`` (a raw read), or None at end of file."""
    parts, left = [], n
    while left:
        chunk = read(left)
        if not chunk:
            return None
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


def read_message(read):
    """The next message's arrays (a dict), or None at end of file. ``read(k)``: raw read."""
    header = read_exact(read, _HEADER.size)
    if header is None:
        return None
    body = read_exact(read, _HEADER.unpack(header)[0])
    if body is None:
        return None
    with np.load(io.BytesIO(body), allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


def non_interactive(backend):
    """Whether a matplotlib backend name draws only to files (``agg``, ``pdf``...)."""
    try:
        from matplotlib.backends import BackendFilter, backend_registry

        names = backend_registry.list_builtin(BackendFilter.NON_INTERACTIVE)
    except ImportError:  # matplotlib < 3.9
        from matplotlib import rcsetup

        names = rcsetup.non_interactive_bk
    return str(backend).lower() in {name.lower() for name in names}


def display_problem(environ=None, platform=None):
    """Why no window can open (a phrase), or None when one may.

    On Linux and other X11/Wayland systems a window needs ``DISPLAY`` or
    ``WAYLAND_DISPLAY``; ``MPLBACKEND`` naming a non-interactive backend rules a
    window out anywhere. The viewer checks the backend matplotlib really picks too.

    Examples
    --------
    >>> display_problem({}, "linux")
    'no display (DISPLAY is not set)'
    >>> display_problem({"DISPLAY": ":0", "MPLBACKEND": "Agg"}, "linux")
    "matplotlib's backend 'Agg' (MPLBACKEND) draws no window"
    >>> display_problem({"DISPLAY": ":0"}, "linux") is None
    True
    """
    environ = os.environ if environ is None else environ
    platform = sys.platform if platform is None else platform
    windowed = platform.startswith(("win", "darwin", "cygwin"))
    if not windowed and not (environ.get("DISPLAY") or environ.get("WAYLAND_DISPLAY")):
        return "no display (DISPLAY is not set)"
    backend = environ.get("MPLBACKEND")
    if backend and non_interactive(backend):
        return f"matplotlib's backend {backend!r} (MPLBACKEND) draws no window"
    return None


def spawn(run_dir, file=False, trail=8):
    """Start the viewer of ``run_dir``; returns its :class:`subprocess.Popen`.

    Its stdin takes messages, its stdout answers :data:`READY`; its stderr is the
    run's. It holds no file of the run open (``close_fds``), so it never holds the
    run's lock.
    """
    root = str(Path(__file__).resolve().parent.parent)
    argv = [sys.executable, "-c", _LAUNCH, root, str(run_dir), "--trail", str(int(trail))]
    if file:
        argv.append("--file")
    return subprocess.Popen(
        argv,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        close_fds=True,
        env={**os.environ, **_ONE_THREAD},
    )


class _History:
    """The loss curve received so far, thinned to at most ``_MAX_HISTORY`` points."""

    def __init__(self, steps=(), losses=()):
        self.steps = np.asarray(steps, dtype=float)
        self.losses = np.asarray(losses, dtype=float)

    def extend(self, steps, losses):
        keep = np.asarray(steps, dtype=float) > (self.steps[-1] if len(self.steps) else -1)
        self.steps = np.concatenate([self.steps, np.asarray(steps, dtype=float)[keep]])
        self.losses = np.concatenate([self.losses, np.asarray(losses, dtype=float)[keep]])
        if len(self.steps) > _MAX_HISTORY:  # every other old point; the newest kept
            pick = np.r_[np.arange(0, len(self.steps) - 1, 2), len(self.steps) - 1]
            self.steps, self.losses = self.steps[pick], self.losses[pick]


def _saved_history(run_dir):
    """The loss curve already in the run's trace (a resumed run), else an empty one."""
    from .errors import RunStoreError
    from .store import read_stream

    try:
        scalars = read_stream(Path(run_dir) / "trace", "scalars")
    except (RunStoreError, OSError):
        return _History()
    if "step" not in scalars or "loss" not in scalars:
        return _History()
    return _History(scalars["step"], scalars["loss"])


def _setting(run_dir, first):
    from .animation import setting_of
    from .store import load_npz, read_json

    run_dir = Path(run_dir)
    problem = load_npz(run_dir / "problem.npz")
    config = read_json(run_dir / "config.json")
    bias = problem.get("bias")
    if bias is None:
        bias = read_json(run_dir / "meta.json").get("bias", False)
    return setting_of(
        problem["X"],
        problem["Y"],
        bool(bias),
        config["model"]["scaling"],
        [first["W"]],
        measure="p" in first,
        title=f"{config.get('experiment', '')}  {run_dir.name}  (live)".strip(),
    )


def _frame(message):
    from .animation import Frame

    return Frame(
        step=int(message["step"]),
        W=message["W"],
        a=message["a"],
        p=message.get("p"),
    )


class _Viewer:
    """Reads messages from fd 0, draws them, answers READY on fd 1."""

    def __init__(self, run_dir, file, trail):
        self.run_dir, self.file = Path(run_dir), file
        self.trail = deque(maxlen=trail)
        self.history = _saved_history(run_dir)
        self.view = self.plt = None

    def ready(self):
        os.write(1, READY)

    def read(self):
        return read_message(lambda n: os.read(0, n))

    def open(self, message):
        from .animation import RunView

        setting = _setting(self.run_dir, message)
        if self.file:
            self.view = RunView(setting)
        else:
            fig = self.plt.figure(figsize=RunView.size(setting), layout="constrained")
            fig.canvas.manager.set_window_title(f"relulab live: {self.run_dir.name}")
            self.view = RunView(setting, fig)

    def draw(self, message):
        frame = _frame(message)
        self.history.extend(message.get("steps", ()), message.get("losses", ()))
        status = str(message["status"]) if "status" in message else ""
        note = f"  (run ended: {status})" if status else ""
        self.view.show(frame, list(self.trail), self.history.steps, self.history.losses, note)
        self.trail.append(frame)
        if self.file:
            from .analysis import save_figures

            save_figures({"live": self.view.fig}, self.run_dir / "plots", dpi=80)
        else:
            self.view.fig.canvas.draw_idle()
            self.view.fig.canvas.flush_events()

    def idle(self, seconds):
        """Let ``seconds`` pass, the window responsive; False once it is closed."""
        end = time.perf_counter() + seconds
        while True:
            left = end - time.perf_counter()
            if self.file:
                time.sleep(max(left, 0.0))
                return True
            if not self.plt.fignum_exists(self.view.fig.number):
                return False
            if left <= 0:
                return True
            self.view.fig.canvas.start_event_loop(min(left, 0.05))

    def wait_for_input(self):
        """Keep the window responsive until a message is there; False once it is closed."""
        while not select.select([0], [], [], 0)[0]:
            if not self.idle(0.05):
                return False
        return True

    def run(self):
        if not self.file:
            import matplotlib.pyplot as plt

            backend = plt.get_backend()
            if non_interactive(backend):
                print(
                    f"live view: matplotlib's backend {backend!r} draws no window; "
                    "the run goes on with the terminal view",
                    file=sys.stderr,
                )
                return 0
            self.plt = plt
            plt.ion()
        else:
            import matplotlib

            matplotlib.use("Agg")
        self.ready()
        message = self.read()
        if message is None:
            return 0
        self.open(message)
        while True:
            began = time.perf_counter()
            self.draw(message)
            if "status" in message:
                break
            if not self.idle((time.perf_counter() - began) * (1.0 / SHARE - 1.0)):
                return 0  # the window was closed: the run goes on without it
            self.ready()
            if not self.file and not self.wait_for_input():
                return 0  # the window was closed: the run goes on without it
            message = self.read()
            if message is None:  # the run's process ended without a last message
                break
        if not self.file and self.plt.fignum_exists(self.view.fig.number):
            self.plt.ioff()
            self.plt.show()  # until the user closes the window
        return 0


def main(argv=None):
    """The viewer process (started by :func:`spawn`); returns the exit code."""
    parser = argparse.ArgumentParser(prog="core.live", description="live view of a run")
    parser.add_argument("run_dir")
    parser.add_argument("--trail", type=int, default=8)
    parser.add_argument("--file", action="store_true", help="write RUN/plots/live.png")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the run, not the view
    if hasattr(os, "nice"):
        os.nice(NICE)  # the run's loop first
    try:
        return _Viewer(args.run_dir, args.file, args.trail).run()
    except BrokenPipeError:  # the run's process is gone
        return 0
    except Exception as exc:  # noqa: BLE001 - one line, never a traceback over the run's display
        print(f"live view stopped: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
