"""Sweeps: many runs from one config, on a local process pool or on Dask distributed.

A config declares its sweep in a ``sweep`` section::

    "sweep": {
        "grid": {"model.width": [20, 40, 80], "data.d": [5, 10]},  # every combination
        "zip": {"algorithm.lr": [0.1, 0.01], "stoppers.max_steps.steps": [100, 1000]},
        "seeds": 10,                                 # seed = config seed + 0..9
        "success": {"key": "final_loss", "below": 1e-3},  # for the success fraction
    }

Points are ``product(grid) x zip rows x seeds`` (:func:`expand_sweep`); each is an
ordinary run in ``runs/<experiment>/<stamp>-<id>/runs/<point id>/`` of the sweep
folder, whose ``sweep.json`` lists the points and whose ``status.csv`` says where
each stands (:mod:`core.sweep._folder`).

* :func:`run_sweep` validates every point, then runs them on a local process pool
  (``jobs``), a Dask ``LocalCluster`` (``dask="local"``) or a Dask scheduler
  (``dask="tcp://host:port"``), with a live display; a failing point is recorded
  and the others go on.
* :func:`resume_sweep` finishes a sweep: done points (``finished``, ``diverged``)
  are skipped, ``interrupted`` / ``crashed`` ones continue from their checkpoint,
  ``failed`` and never-started ones run from scratch; a point never gets a second
  folder; a changed config is refused.
* :func:`summarize_sweep` writes ``summary.csv`` (one row per run) and
  ``groups.csv`` (mean, std and success fraction over seeds);
  :func:`plot_sweep` draws curves (1-D) or heat maps (2-D).
* ``sweep_analysis`` plugins see the sweep as a :class:`SweepResults` and add
  tables (:func:`analyse_sweep`, run by ``postprocess.py``) and figures
  (:func:`draw_sweep_analyses`, part of :func:`plot_sweep`).
"""

from ._aggregate import summarize_sweep
from ._execute import resume_sweep, run_sweep
from ._folder import (
    DONE_STATUSES,
    find_latest_sweep,
    is_sweep_dir,
    load_sweep,
    read_status,
    sweep_path,
)
from ._plot import plot_sweep
from ._results import SweepResults, analyse_sweep, draw_sweep_analyses
from ._spec import Point, config_hash, expand_sweep, group_by_shape, together_key, validate_spec
from ._worker import run_batch, run_point, run_points

__all__ = [
    "run_sweep",
    "resume_sweep",
    "summarize_sweep",
    "plot_sweep",
    "SweepResults",
    "analyse_sweep",
    "draw_sweep_analyses",
    "is_sweep_dir",
    "find_latest_sweep",
    "sweep_path",
    "load_sweep",
    "read_status",
    "expand_sweep",
    "validate_spec",
    "group_by_shape",
    "config_hash",
    "run_batch",
    "run_point",
    "run_points",
    "together_key",
    "Point",
    "DONE_STATUSES",
]
