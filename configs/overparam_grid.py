"""Over-parameterisation success grid of Polaczyk & Cyranka (TMLR), Fig. 2.

What it shows: how often full-batch SGD with momentum 0.9 and lr 0.15 fits ``N = 200``
random +-1 labels, as a function of the input dimension ``d0`` (``data.d``) and the
width ``d1`` (``model.width``), for the paper's two architectures, swept together
(``sweep.zip``):

* BasicNet1L (``algorithm.train=first``, ``init.second_layer=signed``): one
  trainable layer ``W`` (iid ``N(0, 1)``, no bias), the second layer fixed at
  ``+-1/sqrt(d1)`` with exactly ``floor(d1 / 2)`` negative entries at random
  positions;
* BasicNet2L (``algorithm.train=both``, ``init.second_layer=uniform``): ``W`` iid
  ``N(0, 1)``, second layer uniform in ``+-1/sqrt(d1)`` (torch's default for a
  bias-free ``nn.Linear``), both trained.

Data (``uniform``): inputs uniform in ``[-1, 1]^d0`` then each row scaled to unit norm
(not uniform on the sphere), labels the sign of a uniform draw (the paper's ``d2 = 1``
normalisation: exactly +-1), one data set per grid cell shared by the cell's runs,
which differ in their initialisation (``sweep.data = "cell"``: the authors'
``grid_search.py`` draws ``X``, ``Y`` once per ``(d0, d1)`` and trains its 10 runs
on them; it seeds nothing, relulab draws each cell's data from a seed made from the
config's seed and the cell). ``sweep.data=run`` draws a data set per run instead.
Loss: mean-squared error, float32 parameters (the authors' torch default).
Success (``sweep.success``): the last recorded loss over ``sqrt(N)`` below 2.5e-3,
i.e. ``final_loss < THRESHOLD = 2.5e-3 sqrt(200) = 0.03536``; a run that diverges
(the two-layer net at small ``d0``, as with the authors' code) is ``diverged`` and
counts as a failure. The authors record the loss before each step, so their last
recorded loss (of 49 999) is that after 49 998 updates: ``stoppers.max_steps.steps=49998`` here.

Outputs: ``python postprocess.py latest`` writes ``groups.csv`` (per cell: success
fraction, mean and std of the final loss) and, by the ``corner_grid`` sweep
analysis, ``corner_grid.csv`` (per cell: success fraction, mean and std of the final
loss and of the final corner count, ``|x_i . w_r| < 1e-8`` from the metric
``corners``); ``python plot.py latest`` draws heat maps over ``(d0, d1)`` of the
success fraction (and its contours), of the mean final loss and of the mean corner
count (``sweep_corners_*``), one per architecture.

Default (scaled down): ``d0`` in 4, 10, 16, 22, 28, ``d1`` in 4, 12, 20, 40, 60, both
architectures, 3 runs, 3000 steps: 150 runs, measured 11.6 s with ``--jobs 2`` on the
idle two-core machine (3 min 9 s while it was shared at load average about 12; the 3
runs of a cell train as one ensemble), ``postprocess.py`` 1.8 s, ``plot.py`` 5.3 s.
Success fractions (BasicNet1L / BasicNet2L): the two-layer net fits from about ``d0
d1 >= N`` (every run at ``d0 >= 16, d1 >= 12`` and ``d0 = 10, d1 >= 40``, 2/3 at ``(10,
20)``, none at ``d0 = 4`` nor ``d1 = 4``; 4 of its 75 runs diverged, two at ``(4, 40)``
and two at ``(4, 60)``); the one-layer net, after 3000 of the paper's 49 998 steps,
only at ``d0 >= 22`` (``d0 = 22``: ``d1 >= 40``; ``d0 = 28``: ``d1 >= 20``, and 1/3 at
``d1 = 12``), none at ``d0 <= 16`` even with ``d1 = 60``. Mean corners at the end:
0 for the one-layer net but in four cells (1/3), 0.3 to 1.3 for the two-layer net
in most cells where it fits with ``d1 >= 12``.

The paper's grid, as overrides (``PAPER_OVERRIDES``)::

    python runner.py configs/overparam_grid.py --jobs 2 sweep.seeds=10 \\
        "sweep.grid={'data.d': [$(seq -s, 2 2 60)], 'model.width': [$(seq -s, 2 2 60)]}" \\
        stoppers.max_steps.steps=49998

is 30 x 30 cells x 2 architectures x 10 runs = 18 000 runs of 49 998 steps.
Measured cost of a cell (its 10 runs train as one ensemble), 2000 steps at the
corners of the grid on the shared two-core machine: 2.7 s at ``d0 = d1 = 2``, 5 s at
``(60, 2)``, 14-15 s at ``d1 = 60`` (0.13 to 0.75 ms per run and step; the width
dominates). Scaled to 49 998 steps: about 70 s to 6 min per cell and architecture,
about 110 hours of one worker for the whole grid (extrapolated, not run), 55 hours
with ``--jobs 2``. At ``d0 = 2, d1 = 60`` most two-layer runs diverge within 30 steps
(the authors' code does the same at small ``d0``).
"""

import math

from configs.base import config as base
from relulab import merge

N = 200
THRESHOLD = 2.5e-3 * math.sqrt(N)
"""Success: the last recorded loss (MSE) below this, i.e. loss / sqrt(N) below 2.5e-3."""

_PAPER_SIZES = list(range(2, 61, 2))
PAPER_OVERRIDES = [
    f"sweep.grid={{'data.d': {_PAPER_SIZES}, 'model.width': {_PAPER_SIZES}}}",
    "sweep.seeds=10",
    "stoppers.max_steps.steps=49998",
]
"""The paper's grid (Fig. 2): d0, d1 in 2..60 step 2, 10 runs, 49 999 recorded steps."""

config = merge(
    base,
    {
        "experiment": "overparam_grid",
        "seed": 0,
        "model": {"width": 20, "scaling": "standard", "loss": "mse"},
        "data": {
            "name": "uniform",
            "n": N,
            "d": 20,
            "normalize_rows": True,
            "labels": "sign",
            "bias": False,
        },
        "init": {
            "name": "normal",
            "scale": 1.0,
            "second_layer": "signed",
            "a_scale": 1.0,
            "a_scale_mode": "inv_sqrt_m",
        },
        "algorithm": {
            "name": "gd_numpy",
            "optimizer": "momentum",
            "momentum": 0.9,
            "lr": 0.15,
            "train": "first",
            "dtype": "float32",
        },
        "stoppers": {"max_steps": {"steps": 3000}},
        "loggers": {
            "scalars": {"every": 100, "metrics": {"corners": {"threshold": 1e-8}}},
            "snapshots": {"every": 0},
        },
        "sweep": {
            "grid": {"data.d": [4, 10, 16, 22, 28], "model.width": [4, 12, 20, 40, 60]},
            "zip": {
                "algorithm.train": ["first", "both"],
                "init.second_layer": ["signed", "uniform"],
            },
            "seeds": 3,
            "success": {"key": "final_loss", "below": THRESHOLD},
            "data": "cell",  # the authors' setting: a cell's runs share one data set
        },
    },
)
