"""The moving picture of a run: animations of its snapshots, and the live view's figure.

One picture (:class:`RunView`) shows, side by side,

* the neurons: for ``d == 2`` (1-D inputs with a bias, or 2-D inputs without) the points
  ``w_r`` in the plane, coloured by the sign of ``a_r``, area growing with ``|a_r|``,
  with trails over the previous frames; for other ``d`` the same in a fixed 2-D
  projection (the top two principal directions of the neurons, centred, over the
  frames shown); for a measure-valued run (snapshots holding the masses ``p`` of fixed
  positions on a grid, as ``jko``'s) the positive and negative mass on the grid as
  heat maps, as the ``jko_mass`` figure draws them;
* the fitted function over the data, for 1-D inputs (:func:`core.model.forward`);
* the loss curve with the current step marked.

:func:`animate` renders one frame per chosen snapshot (:func:`subsample`: log-spaced
in the step, first and last included) with :mod:`matplotlib.animation` and writes
``RUN/plots/animation.gif`` (Pillow) or ``.mp4`` (ffmpeg). The live view
(:mod:`core.live`) updates the same :class:`RunView` with the latest state of a
running run; its axes grow as the neurons leave them, where an animation fixes them
over all its frames first.
"""

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import model
from .errors import RelulabError, RunStoreError
from .figures import (
    abs_sizes,
    input_grid,
    new_figure,
    plane_labels,
    signs,
    single_output,
)

__all__ = [
    "FORMATS",
    "Frame",
    "Setting",
    "RunView",
    "Animation",
    "subsample",
    "setting_of",
    "setting_from_run",
    "frames_of_run",
    "animate",
]

FORMATS = ("gif", "mp4")
"""File formats :func:`animate` writes: ``gif`` (Pillow) and ``mp4`` (ffmpeg on PATH)."""

PANEL_WIDTH, PANEL_HEIGHT = 4.2, 4.0
"""Size of one panel of a :class:`RunView`, in inches."""

MAX_PCA_POINTS = 20000
"""Neuron positions (over all frames) used to find the projection's principal directions."""


@dataclass
class Frame:
    """The network at one step: ``W`` (d, m), ``a`` (m,) or (m, k), masses ``p`` (m,) or None."""

    step: int
    W: np.ndarray
    a: np.ndarray
    p: np.ndarray = None


@dataclass
class Setting:
    """What a :class:`RunView` needs besides the frames: the data and how to draw neurons.

    Attributes
    ----------
    X : ndarray, shape (n, d)
    Y : ndarray, shape (n, k)
    bias : bool
        The last input column is the constant-1 bias.
    scaling : str
        The model's output scaling (:func:`core.model.forward`).
    title : str
    mode : {"plane", "projection", "mass"}
        How the neurons are drawn (see the module docstring).
    center, basis : ndarray, shapes (d,) and (d, 2), or None
        The projection ``(w - center) @ basis`` of ``projection`` mode.
    cells : (ndarray, ndarray, ndarray, ndarray) or None
        ``mass`` mode: the grid's coordinates per axis and each position's index on them.
    """

    X: np.ndarray
    Y: np.ndarray
    bias: bool
    scaling: str
    title: str
    mode: str
    center: np.ndarray = None
    basis: np.ndarray = None
    cells: tuple = None

    @property
    def fit(self):
        """Whether the inputs are 1-D (the fitted function is drawn)."""
        return self.X.shape[1] - int(self.bias) == 1

    def project(self, W):
        """Neuron positions in the drawn plane, shape (2, m)."""
        W = np.asarray(W, dtype=float)
        if self.mode == "projection":
            return ((W.T - self.center) @ self.basis).T
        return W


def subsample(steps, n_frames):
    """Indices of at most ``n_frames`` snapshots, evenly spaced in ``log(1 + step)``.

    Snapshots are usually log-spaced themselves (dense early, sparse late): frames
    follow them, the first and the last always included, every index distinct (a
    frame that would repeat an index takes the next one).

    Parameters
    ----------
    steps : ndarray, shape (S,)
        The snapshots' steps, increasing.
    n_frames : int
        At least 1.

    Returns
    -------
    indices : ndarray of int, shape (min(S, n_frames),)
        Increasing.

    Examples
    --------
    >>> subsample(np.arange(0, 10001), 5).tolist()
    [0, 9, 99, 999, 10000]
    >>> subsample(np.arange(0, 1001, 100), 4).tolist()  # crowded early: the next ones
    [0, 1, 2, 10]
    >>> subsample(np.array([0, 1, 2]), 10).tolist()
    [0, 1, 2]
    """
    steps = np.asarray(steps, dtype=float)
    count = len(steps)
    if n_frames < 1:
        raise ValueError(f"n_frames must be at least 1; got {n_frames}")
    if count <= n_frames:
        return np.arange(count)
    if n_frames == 1:
        return np.array([count - 1])
    t = np.log1p(steps - steps[0])
    targets = np.linspace(t[0], t[-1], n_frames)
    nearest = np.clip(np.searchsorted(t, targets), 1, count - 1)
    nearest -= (targets - t[nearest - 1]) < (t[nearest] - targets)
    chosen, previous = [], -1
    for k, i in enumerate(nearest):
        i = max(int(i), previous + 1)  # distinct, increasing
        i = min(i, count - (n_frames - k))  # room for the frames still to place
        chosen.append(i)
        previous = i
    return np.array(chosen)


def _grid_cells(W):
    """Coordinates and per-position indices of a tensor grid holding ``W`` (2, N), or None."""
    xs, ix = np.unique(W[0], return_inverse=True)
    ys, iy = np.unique(W[1], return_inverse=True)
    if len(xs) < 2 or len(ys) < 2 or len(xs) * len(ys) > 4 * W.shape[1]:
        return None
    return xs, ys, ix, iy


def _principal_plane(Ws):
    """``(center, basis)``: the mean neuron and the top two principal directions (d, 2)."""
    points = np.concatenate([np.asarray(W, dtype=float).T for W in Ws])
    if len(points) > MAX_PCA_POINTS:
        points = points[:: -(-len(points) // MAX_PCA_POINTS)]
    center = points.mean(axis=0)
    _, vectors = np.linalg.eigh(np.cov(points - center, rowvar=False))
    basis = vectors[:, ::-1][:, :2]
    basis *= np.where(basis.sum(axis=0) < 0, -1.0, 1.0)  # a sign fixed by the data
    return center, basis


def setting_of(X, Y, bias, scaling, Ws, measure, title=""):
    """The :class:`Setting` of a run's data and some of its first layers.

    Parameters
    ----------
    X : ndarray, shape (n, d)
    Y : ndarray, shape (n,) or (n, k)
    bias : bool
    scaling : str
    Ws : sequence of ndarray, each of shape (d, m)
        First layers of the frames to be shown (the projection is fitted on them).
    measure : bool
        The snapshots hold masses ``p`` of fixed positions.
    title : str
    """
    X = np.asarray(X, dtype=float)
    Y = np.asarray(Y, dtype=float).reshape(len(X), -1)
    W = np.asarray(Ws[0])
    d = W.shape[0]
    cells = _grid_cells(W) if measure and d == 2 else None
    common = {"X": X, "Y": Y, "bias": bool(bias), "scaling": scaling, "title": title}
    if cells is not None:
        return Setting(mode="mass", cells=cells, **common)
    if d == 2:
        return Setting(mode="plane", **common)
    if d < 2:
        raise RelulabError(f"cannot draw neurons with {d} input coordinate(s) in a plane")
    center, basis = _principal_plane(Ws)
    return Setting(mode="projection", center=center, basis=basis, **common)


def _run_title(run):
    return f"{run.meta.get('experiment', '')}  {run.path.name}".strip()


def frames_of_run(run, indices):
    """The :class:`Frame` of each chosen snapshot index of ``run``."""
    snaps = run.snapshots
    has_p = "p" in snaps
    return [
        Frame(
            step=int(snaps.steps[i]),
            W=np.asarray(snaps["W"][i]),
            a=np.asarray(snaps["a"][i]),
            p=np.asarray(snaps["p"][i]) if has_p else None,
        )
        for i in indices
    ]


def setting_from_run(run, frames):
    """The :class:`Setting` of a saved run shown with ``frames`` (:func:`frames_of_run`)."""
    from .analysis import has_bias

    problem = run.problem
    return setting_of(
        problem["X"],
        problem["Y"],
        has_bias(run),
        run.config["model"]["scaling"],
        [f.W for f in frames],
        measure=frames[0].p is not None,
        title=_run_title(run),
    )


class _Bounds:
    """Axis limits that grow to hold what is drawn (never shrink), with a margin."""

    def __init__(self, margin=0.08):
        self.lo = self.hi = None
        self.margin = margin

    def include(self, values):
        """Widen to hold ``values`` (shape (n_axes, n)); return whether the limits changed."""
        values = np.asarray(values, dtype=float).reshape(len(values), -1)
        finite = np.where(np.isfinite(values), values, np.nan)
        if not np.isfinite(finite).any():
            return False
        lo, hi = np.nanmin(finite, axis=1), np.nanmax(finite, axis=1)
        if self.lo is not None and np.all(lo >= self.lo) and np.all(hi <= self.hi):
            return False
        lo = lo if self.lo is None else np.minimum(lo, self.lo)
        hi = hi if self.hi is None else np.maximum(hi, self.hi)
        pad = self.margin * np.maximum(hi - lo, 1e-3 * np.maximum(np.abs(hi), 1.0))
        self.lo, self.hi = lo - pad, hi + pad
        return True


class _NeuronPanel:
    """Neurons in the plane (or projected), coloured by sign, with trails."""

    def __init__(self, ax, setting):
        from matplotlib.collections import LineCollection

        self.ax, self.setting = ax, setting
        self.bounds = _Bounds()
        self.top = 0.0
        self.trails = LineCollection([], linewidths=0.8)
        ax.add_collection(self.trails)
        self.dots = ax.scatter([], [], s=[], linewidths=0)
        if setting.mode == "plane":
            xlabel, ylabel = plane_labels(setting.bias)
        else:
            xlabel, ylabel = "principal direction 1", "principal direction 2"
        ax.axhline(0, color="0.8", linewidth=0.5, zorder=0)
        ax.axvline(0, color="0.8", linewidth=0.5, zorder=0)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)

    def fix(self, frames):
        for frame in frames:
            self.bounds.include(self.setting.project(frame.W))
            self.top = max(self.top, float(np.abs(self._weights(frame)).max(initial=0.0)))
        self._apply_bounds()

    def _weights(self, frame):
        a = single_output(frame.a, 1)
        return a if a.ndim == 1 else np.linalg.norm(a, axis=1)

    def _colours(self, frame):
        a = single_output(frame.a, 1)
        return signs(a) if a.ndim == 1 else np.full(a.shape[0], "0.3")

    def _apply_bounds(self):
        if self.bounds.lo is not None:
            self.ax.set_xlim(self.bounds.lo[0], self.bounds.hi[0])
            self.ax.set_ylim(self.bounds.lo[1], self.bounds.hi[1])

    def show(self, frame, trail):
        points = self.setting.project(frame.W)  # (2, m)
        weights = self._weights(frame)
        self.top = max(self.top, float(np.abs(weights).max(initial=0.0)))
        colours = self._colours(frame)
        self.dots.set_offsets(points.T)
        self.dots.set_sizes(abs_sizes(weights, self.top or 1.0))
        self.dots.set_facecolors(colours)
        path = [self.setting.project(f.W) for f in trail] + [points]
        if len(path) > 1:
            stacked = np.stack(path, axis=1)  # (2, T, m)
            segments = np.stack([stacked[:, :-1], stacked[:, 1:]], axis=-1)  # (2, T-1, m, 2)
            segments = segments.transpose(1, 2, 3, 0).reshape(-1, 2, 2)  # time-major
            age = np.repeat(np.arange(1, len(path)) / (len(path) - 1), points.shape[1])
            from matplotlib.colors import to_rgba_array

            rgba = to_rgba_array(np.tile(colours, len(path) - 1))
            rgba[:, 3] = 0.1 + 0.5 * age
            self.trails.set_segments(segments)
            self.trails.set_colors(rgba)
        else:
            self.trails.set_segments([])
        if self.bounds.include(points):
            self._apply_bounds()


class _MassPanel:
    """Positive and negative mass on the grid, as the ``jko_mass`` heat maps."""

    def __init__(self, axes, setting):
        self.setting = setting
        xs, ys, _, _ = setting.cells
        self.top = {"positive": 0.0, "negative": 0.0}
        self.images = {}
        xlabel, ylabel = plane_labels(setting.bias)
        extent = (xs[0], xs[-1], ys[0], ys[-1])
        for ax, label, cmap in ((axes[0], "positive", "Reds"), (axes[1], "negative", "Blues")):
            self.images[label] = ax.imshow(
                np.zeros((len(ys), len(xs))),
                origin="lower",
                extent=extent,
                aspect="auto",
                cmap=cmap,
                vmin=0.0,
                vmax=1.0,
                interpolation="nearest",
            )
            ax.set_xlabel(xlabel)
            ax.set_ylabel(f"{label} mass\n{ylabel}")
            ax.figure.colorbar(self.images[label], ax=ax, shrink=0.85)

    def maps(self, frame):
        """``{"positive": (ny, nx), "negative": (ny, nx)}`` mass summed onto the grid."""
        xs, ys, ix, iy = self.setting.cells
        p = np.asarray(frame.p, dtype=float)
        positive = single_output(frame.a, 1) >= 0
        out = {}
        for label, pick in (("positive", positive), ("negative", ~positive)):
            grid = np.zeros((len(ys), len(xs)))
            np.add.at(grid, (iy[pick], ix[pick]), p[pick])
            out[label] = grid
        return out

    def fix(self, frames):
        for frame in frames:
            for label, grid in self.maps(frame).items():
                self.top[label] = max(self.top[label], float(grid.max()))

    def show(self, frame, trail):
        for label, grid in self.maps(frame).items():
            self.top[label] = max(self.top[label], float(grid.max()))
            image = self.images[label]
            image.set_data(grid)
            image.set_clim(0.0, self.top[label] or 1.0)


class _FitPanel:
    """The data and the network's function on a fine grid of the input.

    The vertical range is the data's, widened by a quarter on each side: an early
    network far off the data leaves the panel rather than squashing the data flat.
    """

    def __init__(self, ax, setting):
        self.ax, self.setting = ax, setting
        self.grid, self.G = input_grid(setting.X[:, 0], setting.bias)
        k = setting.Y.shape[1]
        for j in range(k):
            ax.scatter(setting.X[:, 0], setting.Y[:, j], s=12, color=f"C{j}", zorder=3)
        self.lines = [ax.plot([], [], color=f"C{j}")[0] for j in range(k)]
        bounds = _Bounds(margin=0.25)
        bounds.include(setting.Y.T.reshape(1, -1))
        ax.set_xlim(self.grid[0], self.grid[-1])
        ax.set_ylim(bounds.lo[0], bounds.hi[0])
        ax.set_xlabel("$x$")
        ax.set_ylabel("$y$")

    def fix(self, frames):
        pass

    def show(self, frame, trail):
        f = model.forward(self.G, frame.W, frame.a, self.setting.scaling)
        f = np.asarray(f, dtype=float).reshape(len(self.grid), -1)
        for j, line in enumerate(self.lines):
            line.set_data(self.grid, f[:, j])


class _LossPanel:
    """The loss curve so far, the whole curve faint behind it, the current step marked."""

    def __init__(self, ax):
        self.ax = ax
        self.whole = ax.plot([], [], color="0.8")[0]
        self.so_far = ax.plot([], [], color="C0")[0]
        self.mark = ax.plot([], [], "o", color="C3", ms=5)[0]
        self.bounds = _Bounds(margin=0.02)
        self.log = False
        ax.set_xlabel("step")
        ax.set_ylabel("loss")

    def _include(self, steps, losses):
        keep = np.isfinite(losses)
        if self.log:
            keep &= losses > 0
        if not keep.any():
            return
        values = np.log10(losses[keep]) if self.log else losses[keep]
        if self.bounds.include(np.vstack([steps[keep], values])):
            lo, hi = self.bounds.lo, self.bounds.hi
            self.ax.set_xlim(max(lo[0], 0.0), hi[0])  # steps are never negative
            self.ax.set_ylim(*((10 ** lo[1], 10 ** hi[1]) if self.log else (lo[1], hi[1])))

    def fix(self, steps, losses):
        """Draw the whole curve (an animation knows it) and fix the limits over it."""
        steps, losses = np.asarray(steps, dtype=float), np.asarray(losses, dtype=float)
        self.log = bool((losses[np.isfinite(losses)] > 0).any())
        if self.log:
            self.ax.set_yscale("log")
        self.whole.set_data(steps, losses)
        self._include(steps, losses)

    def show(self, step, steps, losses):
        steps, losses = np.asarray(steps, dtype=float), np.asarray(losses, dtype=float)
        if not self.log and (losses[np.isfinite(losses)] > 0).any():
            self.log = True
            self.ax.set_yscale("log")
            self.bounds = _Bounds(margin=0.02)
        upto = steps <= step
        self.so_far.set_data(steps[upto], losses[upto])
        if upto.any():
            self.mark.set_data([steps[upto][-1]], [losses[upto][-1]])
        self._include(steps[upto], losses[upto])
        self.ax.set_title(f"step {step}", fontsize="small")


class RunView:
    """The picture of a run: neurons (or mass), fit (1-D inputs), loss.

    Parameters
    ----------
    setting : Setting
    fig : matplotlib.figure.Figure, optional
        Drawn into (the live view passes a pyplot figure with a window); default a new
        Agg figure of :meth:`size` inches.

    Examples
    --------
    >>> X = np.column_stack([np.linspace(-1, 1, 5), np.ones(5)])
    >>> s = setting_of(X, X[:, 0] ** 2, True, "standard", [np.eye(2)], measure=False)
    >>> view = RunView(s)
    >>> view.show(Frame(0, np.eye(2), np.array([1.0, -1.0])), [], [0], [0.5])
    >>> [ax.get_xlabel() for ax in view.fig.axes]
    ['input weight $w$', '$x$', 'step']
    """

    def __init__(self, setting, fig=None):
        self.setting = setting
        fig = fig if fig is not None else new_figure(self.size(setting))
        self.fig = fig
        n = self.n_panels(setting)
        axes = list(fig.subplots(1, n, squeeze=False)[0])
        if setting.mode == "mass":
            self.neurons = _MassPanel(axes[:2], setting)
            axes = axes[2:]
        else:
            self.neurons = _NeuronPanel(axes[0], setting)
            axes = axes[1:]
        self.fit = _FitPanel(axes.pop(0), setting) if setting.fit else None
        self.loss = _LossPanel(axes.pop(0))
        self.title = fig.suptitle(setting.title, fontsize="small")

    @staticmethod
    def n_panels(setting):
        """Number of panels: neurons (two for mass), fit for 1-D inputs, loss."""
        return (2 if setting.mode == "mass" else 1) + int(setting.fit) + 1

    @classmethod
    def size(cls, setting):
        """Figure size in inches, ``(width, height)``."""
        return (PANEL_WIDTH * cls.n_panels(setting), PANEL_HEIGHT)

    def fix(self, frames, steps, losses):
        """Fix every axis over ``frames`` and the whole loss curve (an animation's limits)."""
        self.neurons.fix(frames)
        if self.fit is not None:
            self.fit.fix(frames)
        self.loss.fix(steps, losses)

    def show(self, frame, trail, steps, losses, note=""):
        """Draw ``frame``; ``trail``: earlier frames (oldest first); losses so far.

        Parameters
        ----------
        frame : Frame
        trail : list of Frame
        steps, losses : ndarray, shape (L,)
            The loss curve (points after ``frame.step`` are not drawn as reached).
        note : str
            Appended to the title (the live view says when the run ended).
        """
        self.neurons.show(frame, trail)
        if self.fit is not None:
            self.fit.show(frame, trail)
        self.loss.show(frame.step, steps, losses)
        self.title.set_text(f"{self.setting.title}  step {frame.step}{note}".strip())


@dataclass
class Animation:
    """What :func:`animate` wrote: ``path``, ``n_frames``, ``size`` (pixels) and ``steps``."""

    path: Path
    n_frames: int
    size: tuple
    steps: np.ndarray


def _writer(fmt, fps):
    from matplotlib import animation

    if fmt == "gif":
        return animation.PillowWriter(fps=fps)
    if fmt == "mp4":
        if shutil.which("ffmpeg") is None:
            raise RelulabError(
                "--format mp4 needs ffmpeg on PATH, which is not found; "
                "install ffmpeg or write a gif (the default)"
            )
        return animation.FFMpegWriter(fps=fps)
    raise RelulabError(f"format must be one of {set(FORMATS)}; got {fmt!r}")


def _progress(enabled):
    """A rich progress bar on stderr (a no-op context when not ``enabled``)."""
    from contextlib import nullcontext

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    if not enabled:
        return nullcontext(None)
    return Progress(
        "rendering",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    )


def animate(run, fmt="gif", frames=100, fps=10.0, dpi=80, trail=8, progress=True, path=None):
    """Render a run's snapshots as an animation into ``RUN/plots/animation.<fmt>``.

    Parameters
    ----------
    run : core.store.Run
    fmt : {"gif", "mp4"}
        ``gif`` through Pillow; ``mp4`` needs ffmpeg on PATH.
    frames : int
        At most this many frames, one per snapshot (:func:`subsample` chooses them).
    fps : float
        Frames per second.
    dpi : float
        Pixels per inch of the :meth:`RunView.size` figure.
    trail : int
        Earlier frames each neuron's trail reaches back.
    progress : bool
        Show a progress bar on stderr while rendering.
    path : Path, optional
        Where to write (default ``RUN/plots/animation.<fmt>``).

    Returns
    -------
    Animation

    Raises
    ------
    core.errors.RelulabError
        The run has no snapshots of a network, ``mp4`` without ffmpeg, a bad value.
    """
    from .analysis import require_complete
    from .store import atomic_write_bytes

    if fmt not in FORMATS:
        raise RelulabError(f"format must be one of {set(FORMATS)}; got {fmt!r}")
    if frames < 1 or not fps > 0 or not dpi > 0 or trail < 0:
        raise RelulabError(
            f"frames must be >= 1, fps and dpi > 0, trail >= 0; got {frames}, {fps}, {dpi}, {trail}"
        )
    require_complete(run)
    snaps = run.snapshots
    if not len(snaps) or "W" not in snaps or "a" not in snaps:
        raise RunStoreError(f"no parameter snapshots (W, a) to animate in {run.path}")
    writer = _writer(fmt, fps)
    indices = subsample(snaps.steps, frames)
    shown = frames_of_run(run, indices)
    setting = setting_from_run(run, shown)
    view = RunView(setting)
    scalars = run.scalars
    steps = np.asarray(scalars.get("step", snaps.steps), dtype=float)
    losses = np.asarray(scalars.get("loss", np.full(len(steps), np.nan)), dtype=float)
    view.fix(shown, steps, losses)

    def draw(k):
        view.show(shown[k], shown[max(0, k - trail) : k], steps, losses)

    target = Path(path) if path is not None else run.path / "plots" / f"animation.{fmt}"
    target.parent.mkdir(exist_ok=True)
    with _progress(progress) as bar, tempfile.TemporaryDirectory() as tmp:
        task = bar.add_task("frames", total=len(shown)) if bar is not None else None
        out = Path(tmp) / target.name
        with writer.saving(view.fig, str(out), dpi):
            for k, frame in enumerate(shown):
                view.show(frame, shown[max(0, k - trail) : k], steps, losses)
                if k == 0:  # the limits are fixed: lay the figure out once, not per frame
                    view.fig.draw_without_rendering()
                    view.fig.set_layout_engine("none")
                writer.grab_frame()
                if bar is not None:
                    bar.update(task, completed=k + 1)
        atomic_write_bytes(target, out.read_bytes())
    width, height = RunView.size(setting)
    return Animation(
        path=target,
        n_frames=len(shown),
        size=(int(round(width * dpi)), int(round(height * dpi))),
        steps=np.asarray(snaps.steps)[indices],
    )
