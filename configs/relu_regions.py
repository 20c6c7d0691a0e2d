"""How training moves through ReLU regions: Polaczyk & Cyranka (TMLR), Fig. 3.

What it shows: the network and data of ``configs/overparam_grid.py`` (BasicNet1L:
``W`` trained from ``N(0, 1)``, second layer fixed at ``+-1/sqrt(d1)`` with
``floor(d1/2)`` negative; ``N = 200`` unit-norm cube inputs in ``d0 = 20``
dimensions, labels +-1; MSE; full-batch SGD, momentum 0.9, lr 0.15; float32) at the
widths ``d1`` = 200, 752, 2828 (``N``, ``N^1.25``, ``N^1.5``), every width and run on
one data set (``data_seed``: the authors' ``relu_region.py`` draws ``X``, ``Y`` once
and trains every width and run on them; ``data_seed=None`` draws one per run), with,
at every step,
the paper's region metrics (``loggers.scalars.metrics``):

* ``rel_loss_change`` ``|L_t - L_{t-1}| / L_{t-1}`` (metric ``loss_change``);
* ``hamming_init`` / ``hamming_prev``: entries of the ``N x d1`` activation pattern
  ``1[x_i . w_r > 0]`` that differ from the initial / previous step's, and
  ``patterns_visited`` (``activation_patterns``);
* ``corners``: pre-activations with ``|x_i . w_r| < 1e-8`` (``corners``);
* ``grad_change`` ``max_p ||g_t^p - g_{t-1}^p||_2 / max_p ||g_{t-1}^p||_2`` (spectral
  norms) and ``grad_norm_sum`` ``sum_p ||g^p||_F`` (``grad_change``; the closed-form
  gradient of the loss, ``W`` only since ``a`` is fixed);
* ``neuron_shift_max`` / ``neuron_shift_fro`` (``||W_t - W_0||_F``) and
  ``preact_norm`` ``||X W||_F``.

``python plot.py latest`` draws each over the steps, one curve per width: the mean
over the runs with a band from the smallest to the largest (the built-in ``curves``
sweep analysis, ``plots/sweep_curves_<key>.png``; ``curves.csv`` by ``postprocess.py``).

Default (scaled down): 3 runs per width, 1000 steps. Measured: 49 s with ``--jobs 2``
on the idle two-core machine (6 min 50 s while it was shared at load average about
12; the runs of a width train as one ensemble and the metrics at every step cost
several times the step itself at d1 = 2828), ``postprocess.py`` 1.4 s, ``plot.py``
5.2 s. At step 1000 the loss is 0.069-0.073 (d1 = 200), 0.039-0.043 (752),
0.025-0.029 (2828); the wider the network, the smaller the fraction of pattern
entries changed since the start (0.126, 0.073, 0.040), the smaller the gradient
change (0.58, 0.40, 0.27 at step 1000, after a first peak of 0.063-0.075 near step
35) and the more corners (mean over the last 100 steps 0.15, 0.76, 3.7). The
relative loss change is 0.016-0.019 at step 10 and 0.0015-0.0025 at step 1000.
The paper's length, as overrides (``PAPER_OVERRIDES``): ``sweep.seeds=5
stoppers.max_steps.steps=24998`` (the last of its 24 999 recorded losses is after
24 998 updates), 15 runs, 25x the default's steps per run; the two-layer network
(BasicNet2L) with ``TWO_LAYER_OVERRIDES``: ``algorithm.train=both
init.second_layer=uniform algorithm.lr=0.002``.

``hamming_prev`` and ``grad_change`` compare consecutive *logged* steps: keep
``loggers.scalars.every=1`` for the paper's per-step numbers. After ``--resume`` the
first logged step has NaN for them, and ``patterns_visited`` is NaN from there on
(:mod:`plugins.dynamics._metrics`).
"""

from configs.overparam_grid import config as grid
from relulab import merge

PAPER_OVERRIDES = ["sweep.seeds=5", "stoppers.max_steps.steps=24998"]
"""The paper's Fig. 3 length: 24 999 recorded steps (the last after 24 998 updates), 5 runs."""

TWO_LAYER_OVERRIDES = [
    "algorithm.train=both",
    "init.second_layer=uniform",
    "algorithm.lr=0.002",
]
"""The paper's two-layer network (BasicNet2L): both layers trained, lr 0.002."""

config = merge(
    {key: value for key, value in grid.items() if key not in ("sweep", "loggers")},
    {
        "experiment": "relu_regions",
        "data_seed": 0,  # the authors' setting: one data set for every width and run
        "data": {"d": 20},
        "model": {"width": 200},
        "stoppers": {"max_steps": {"steps": 1000}},
        "loggers": {
            "scalars": {
                "every": 1,
                "metrics": {
                    "loss_change": {},
                    "activation_patterns": {},
                    "corners": {"threshold": 1e-8},
                    "grad_change": {},
                    "neuron_shift": {},
                    "preact_norm": {},
                },
            },
            "snapshots": {"every": 0},
        },
        "sweep": {"grid": {"model.width": [200, 752, 2828]}, "seeds": 3},
    },
)
