"""Documented defaults every shipped config builds on.

Sections
--------
experiment : runs are stored under ``runs/<experiment>/<UTC stamp>-<id>/``.
seed       : every random choice (data, init, algorithm) flows from it.
model      : width m, output scaling (standard | ntk | mean_field), loss convention
             (mse = mean (f - y)^2 | half_mse | half_sum).
data       : one data plugin (``python runner.py --list-plugins`` lists them).
init       : one initialisation plugin.
algorithm  : one algorithm plugin.
stoppers   : name -> parameters; the first stopper to fire ends the run.
loggers    : scalars every step, snapshots every 100 steps.
savers     : make the trace and checkpoint durable every 30 s (and at the end).
run        : runs_dir, display (auto | live | plain | off), refresh rate.

Set a stopper/logger/saver to None to remove it, e.g. ``stoppers.wall_time=None``.
"""

config = {
    "experiment": "default",
    "seed": 0,
    "model": {"width": 100, "scaling": "standard", "loss": "mse"},
    "data": {"name": "sinus"},
    "init": {"name": "normal"},
    "algorithm": {"name": "gd"},
    "stoppers": {
        "max_steps": {"steps": 1000},
        "divergence": {},
    },
    "loggers": {
        "scalars": {"every": 1},
        "snapshots": {"every": 100},
    },
    "savers": {"periodic": {"every_seconds": 30.0}},
    "run": {"runs_dir": "runs", "display": "auto"},
}
