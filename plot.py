"""Draw the figures of a saved run into ``RUN/plots/<stem>.png``.

Usage::

    python plot.py [RUN] [--runs-dir DIR] [--show] [--only NAME ...] [--debug]
    python plot.py [RUN] --animate [--frames N] [--fps F] [--dpi D] [--format gif|mp4]
    python plot.py --compare RUN RUN ... | --compare --experiment NAME [--out FILE.png]

``RUN`` is a run directory, an experiment directory (its newest run) or ``latest``
(default). Every plot plugin whose ``applies(run)`` is true draws its figures
(``--only`` restricts to the named plots); ``--show`` opens them in windows instead of
writing files. Prints the files written. For a sweep folder, draws the sweep's figures
(:func:`core.sweep.plot_sweep`) into ``SWEEP/plots/``. ``--animate`` writes
``RUN/plots/animation.gif`` (or ``.mp4``) instead: :func:`core.animation.animate`.
``--compare`` draws the loss curves of several runs on one figure, labelled by their
differing config values, runs differing only by seed as a mean with a min-max band
(:func:`core.runs_index.save_comparison`; default file ``EXPERIMENT/plots/compare_loss.png``).

The drawing lives in :mod:`core.analysis` (:func:`~core.analysis.draw_plots`,
:func:`~core.analysis.save_figures`); this script parses arguments and prints.
"""

import argparse
import sys
from pathlib import Path

from core.analysis import draw_plots, save_figures
from core.cli import add_run_argument, report_error
from core.errors import RelulabError
from core.registry import get_registry
from core.store import load_run, resolve_target
from core.sweep import is_sweep_dir, plot_sweep

__all__ = ["main"]


def _show(figures):
    import matplotlib.pyplot as plt

    for fig in figures.values():
        try:
            plt.figure(fig)  # matplotlib >= 3.11 gives a figure made outside pyplot a window
        except ValueError:  # older: lend it the canvas (window) of a new pyplot figure
            canvas = plt.figure(figsize=fig.get_size_inches()).canvas
            canvas.figure = fig
            fig.set_canvas(canvas)
    plt.show()


def _parser():
    parser = argparse.ArgumentParser(prog="plot.py", description="Draw the figures of a run.")
    add_run_argument(parser, "run or sweep")
    parser.add_argument("--show", action="store_true", help="open windows instead of writing")
    parser.add_argument(
        "--only",
        nargs="+",
        action="extend",
        metavar="NAME",
        help="draw only these plots (put RUN before --only)",
    )
    animation = parser.add_argument_group("animation (core.animation)")
    animation.add_argument(
        "--animate", action="store_true", help="write RUN/plots/animation.gif: one frame a snapshot"
    )
    animation.add_argument("--frames", type=int, default=100, help="at most N frames (100)")
    animation.add_argument("--fps", type=float, default=10.0, help="frames per second (10)")
    animation.add_argument("--dpi", type=float, default=80.0, help="pixels per inch (80)")
    animation.add_argument(
        "--format", choices=("gif", "mp4"), default="gif", help="gif (Pillow) or mp4 (ffmpeg)"
    )
    parser.add_argument(
        "--compare", nargs="*", metavar="RUN", help="loss curves of runs (or --experiment NAME)"
    )
    parser.add_argument("--experiment", help="with --compare: every run of this experiment")
    parser.add_argument("--out", help="with --compare: the PNG file to write")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    return parser


def _compare(args):
    """``--compare``: one figure of several runs' loss curves; print the file written."""
    import os

    from core.runs_index import runs_of, save_comparison

    root = args.runs_dir or os.environ.get("RELULAB_RUNS_DIR", "runs")
    targets = list(args.compare) + ([args.run] if args.run != "latest" else [])
    print(save_comparison(runs_of(targets, root, args.experiment), args.out))
    return 0


def _animate(args):
    """``--animate``: render the run's snapshots; print the file written."""
    from core.animation import animate

    target = resolve_target(args.run, runs_dir=args.runs_dir)
    if is_sweep_dir(target):
        raise RelulabError(f"--animate draws one run; {target} is a sweep (give one of its runs)")
    result = animate(
        load_run(target),
        fmt=args.format,
        frames=args.frames,
        fps=args.fps,
        dpi=args.dpi,
        progress=sys.stderr.isatty(),
    )
    print(result.path)
    return 0


def main(argv=None):
    """Command-line entry point; returns the exit code."""
    args = _parser().parse_args(argv)
    try:
        if args.animate:
            return _animate(args)
        if args.compare is not None:
            return _compare(args)
        registry = get_registry()
        for name in args.only or ():  # unknown names fail before the run is read
            if name not in registry.names("plot") and Path(name).exists():
                raise RelulabError(f"--only took the run {name!r} as a plot name; put RUN first")
            registry.entry("plot", name, owner="--only")
        target = resolve_target(args.run, runs_dir=args.runs_dir)
        if is_sweep_dir(target):
            figures = plot_sweep(target, registry=registry)
            if not figures:
                print(f"nothing is swept but seeds in {target}", file=sys.stderr)
            for path in save_figures(figures, target / "plots"):
                print(path)
            return 0
        run = load_run(target)
        figures, skipped = draw_plots(run, registry, only=args.only)
        if args.only:
            for name in skipped:
                print(f"note: plot {name!r} does not apply to {run.path}", file=sys.stderr)
        if not figures:
            print(f"no plot applies to {run.path}", file=sys.stderr)
            return 0
        if args.show:
            _show(figures)
            return 0
        for path in save_figures(figures, run.path / "plots"):
            print(path)
    except Exception as exc:
        return report_error(exc, args.debug)
    return 0


if __name__ == "__main__":
    sys.exit(main())
