"""Census of the minima gradient descent finds on the Gaussian population loss (Safran & Shamir).

What it shows: for a teacher of ``k`` ReLU neurons ``V = I_k`` on inputs ``x ~ N(0, I_k)``
and a student of the same width (``model.width = k``), how often plain gradient descent
on the closed-form population loss ``F(W) = 1/2 E[(sum_i relu(w_i . x) - sum_j relu(v_j .
x))^2]`` ends at a spurious (non-global) minimum, and which ones: Safran & Shamir,
"Spurious local minima are common in two-layer ReLU neural networks" (ICML 2018),
procedure of their code ``ItaySafran/Overparameterization``: Xavier initialisation
``W_ij ~ N(0, 1/k)`` (init ``xavier``, ``mode = "fan_in"``), step ``5 / k``, stop at
``||grad F||_F <= 1e-12`` (algorithm ``population_gd``, stopper ``solved``; at most
20 000 steps of 100 gradient steps). Each initialisation is its own run, seeded from
the config (seed + 0, 1, ...); the seeds of one ``k`` train together as one batched
program (the algorithm is batchable: up to 16 runs per ensemble).

``python postprocess.py latest`` writes ``census.json`` and ``census.csv`` (analysis
``census``: per ``k``, global or not, the distinct non-global points in the authors'
compact form with multiplicities, loss, gradient norm, smallest Hessian eigenvalue
(at most 1e-4: not a strict minimum), sum of neuron norms, reconstruction error);
``python plot.py latest`` draws the fraction of initialisations ending at a
non-global minimum against ``k`` (Wilson 95 % intervals), the number of distinct
minima against ``k`` and the neuron-norm sums of the minima for the largest ``k``
(``plots/census_*.png``).

Default: k = 6..20, 40 initialisations each (600 runs). Measured with ``--jobs 2`` on
the two-core development machine (shared with other work): see the table in the
report of issue 17 (about 2-4 minutes, plus about a minute of ``postprocess.py``).
The paper's size, as an override::

    python runner.py configs/population_census.py --jobs 2 sweep.seeds=500 \\
        "sweep.zip={'data.k': list(range(6, 101)), 'model.width': list(range(6, 101))}"

is 95 x 500 = 47 500 runs. Extrapolated, not measured: gradient descent costs grow
like k^2 per step times a step count that grows with k (median about 1000 steps at
k = 10, 3500 at k = 20, with a heavy tail); see the report for the measured per-run
cost at k = 10 and 20. Over-parameterised students (never run in the original):
``"sweep.zip={'data.k': [6, 8, 10], 'model.width': [7, 9, 11]}"``; other teachers:
``data.teacher='orthonormal'`` (a random orthonormal V, one per seed).
"""

from configs.base import config as base
from relulab import merge

K = list(range(6, 21))

config = merge(
    base,
    {
        "experiment": "population_census",
        "seed": 0,
        "model": {"width": 10, "scaling": "standard", "loss": "half_mse"},
        "data": {"name": "gaussian_teacher", "k": 10, "teacher": "identity", "n": 100},
        "init": {
            "name": "xavier",
            "mode": "fan_in",
            "second_layer": "positive",
            "a_scale": 1.0,
        },
        "algorithm": {"name": "population_gd", "lr": None, "tol": 1e-12, "iterations": 100},
        "stoppers": {"solved": {}, "max_steps": {"steps": 20000}, "wall_time": None},
        "loggers": {"scalars": {"every": 0, "per_decade": 10}, "snapshots": {"every": 0}},
        "savers": {"periodic": {"every_seconds": 60.0}},
        "sweep": {"zip": {"data.k": K, "model.width": K}, "seeds": 40},
    },
)
