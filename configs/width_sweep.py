"""A width x data-size sweep of GD on the 1-D sinus, 3 seeds per cell (36 runs).

What it shows: how often a two-layer ReLU network trained by full-batch heavy-ball
momentum (numpy closed-form gradient, both layers, lr 0.002, 3000 steps) fits
Gradient-Work's ``sinus`` data below the success threshold, as a function of the
width ``model.width`` and the number of points ``data.n``. Each point is an ordinary
run of ``configs/gd_sinus.py`` with its own seed (config seed + 0, 1, 2: the seed
draws the initial network), so any point can be opened, plotted and resumed on its
own. Success (final loss below 1e-3) needs a width that grows with ``n``: none at
width 10, all at 640; at 160 all for n = 5 and at most one seed in three for n = 10, 20.
``python postprocess.py latest`` writes ``summary.csv`` (one row per run) and
``groups.csv`` (mean, std over seeds and the success fraction per cell); ``python
plot.py latest`` draws the success fraction and the mean final loss as heat maps over
(width, n).

Run it with ``python runner.py configs/width_sweep.py --jobs 2`` (about five seconds
on two cores), ``--dask local`` for an embedded Dask cluster, or override the grid,
e.g. ``sweep.seeds=10`` or ``"sweep.grid={'model.width': [10, 100, 1000]}"``.
"""

from configs.gd_sinus import config as gd_sinus
from relulab import merge

config = merge(
    gd_sinus,
    {
        "experiment": "width_sweep",
        "algorithm": {"name": "gd_numpy", "optimizer": "momentum", "momentum": 0.9, "lr": 0.002},
        "stoppers": {"max_steps": {"steps": 3000}},
        "loggers": {"scalars": {"every": 10}, "snapshots": {"every": 1000}},
        "sweep": {
            "grid": {"model.width": [10, 40, 160, 640], "data.n": [5, 10, 20]},
            "seeds": 3,
            "success": {"key": "final_loss", "below": 1e-3},
        },
    },
)
