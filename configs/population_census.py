"""Census of the minima gradient descent finds on the Gaussian population loss (Safran & Shamir).

What it shows: for a teacher of ``k`` ReLU neurons ``V = I_k`` on inputs ``x ~ N(0, I_k)``
and a student of the same width (``model.width = k``), how often plain gradient descent
on the closed-form population loss ``F(W) = 1/2 E[(sum_i relu(w_i . x) - sum_j relu(v_j .
x))^2]`` ends at a spurious (non-global) minimum, and which ones: Safran & Shamir,
"Spurious local minima are common in two-layer ReLU neural networks" (ICML 2018),
procedure of their code ``ItaySafran/Overparameterization``: Xavier initialisation
``W_ij ~ N(0, 1/k)`` (init ``xavier``, ``mode = "fan_in"``), step ``5 / k``, stop at
``||grad F||_F <= 1e-12`` (algorithm ``population_gd``, stopper ``solved``; at most
20 000 steps of 100 steps). Each initialisation is its own run, seeded from the config
(seed + 0, 1, ...); the seeds of one ``k`` train together as one batched program (the
algorithm is batchable: the sweep's ``ensemble = 40`` puts all 40 in one stack, where
each leaves as soon as it converges).

Newton polish (``algorithm.newton_below = 1e-3``, the default): once a run's gradient
norm is at most 1e-3 it finishes with Newton steps on the closed-form Hessian, taken
only where the Hessian is positive definite (smallest eigenvalue above
``newton_margin = 1e-6``) and only when they lower the gradient norm or, in a curved
valley where a Newton step raises the gradient norm, lower ``F`` by Armijo's
sufficient decrease, so a saddle or a flat minimum keeps gradient descent. The
descent's path up to there is the authors', so each initialisation ends at the
critical point their gradient descent converges to: on 50 initialisations at k = 10
and at k = 20 the end points agree with plain gradient descent to 3e-11 and 7e-10
(gradient descent's own error, about ``tol / lambda_min``) and the census puts every
one in the same class (``bench/bench_census.py``; also 616 more initialisations at
k = 10 to 40, ``plugins/population/_descent.py``). It takes mean 540 steps instead of
1370 at k = 10 and 1670 instead of 6560 at k = 20, the slowest 4 580 instead of
113 000.
``algorithm.newton_below=None`` is the authors' procedure to the letter, at about
twice (k = 10) and four to six times (k = 20) the compute.

``python postprocess.py latest`` writes ``census.json`` and ``census.csv`` (analysis
``census``: per ``k``, global or not, the distinct non-global points in the authors'
compact form with multiplicities, loss, gradient norm, smallest Hessian eigenvalue
(at most 1e-4: not a strict minimum), sum of neuron norms, reconstruction error);
``python plot.py latest`` draws the fraction of initialisations ending at a
non-global minimum against ``k`` (Wilson 95 % intervals), the number of distinct
minima against ``k`` and the neuron-norm sums of the minima for the largest ``k``
(``plots/census_*.png``).

Default: k = 6..20, 40 initialisations each (600 runs): measured 4.6 s with ``--jobs
2`` on a two-core Intel Xeon (AVX-512; 2026-12-02, with the runner's start-up), then
3.9 s for ``python postprocess.py`` and 3.4 s for ``python plot.py`` (4.7, 3.6 and
3.2 s before the polish's Armijo test: the same census); 15 s on the idle
two-core AMD EPYC (AVX2) development machine of earlier stops (16.5 s with the
runner's start-up; 20 s
before an ensemble's files reached the disk by group commits, ``core/durability.py``;
24 s in ensembles of 16, ``sweep.ensemble=16``; 1 min 57 s while other work kept its
load near 9; 5 min 51 s before the Newton polish, load near 10), then 10.5 s for
``python postprocess.py`` (the census's Hessians and every run's indicators; 48 s
at an earlier stop) and 10 s for
``python plot.py`` (68 s at an earlier stop). It
shows the rise of spurious minima with ``k`` (the same census with and without the
polish): every initialisation reached the global minimum at k = 6, 1 of 40 ended at a non-global
minimum at k = 7 (the ``p = [1, 6]`` point of the authors' README, to 1e-10), 13 of 40
at k = 10, 40 of 40 at k = 19 and 20, with 9 distinct minima at k = 20 (blocks ``p =
[1, k-1]``, ``[2, k-2]``, ...), all strict (smallest Hessian eigenvalue 0.0004 to 0.055)
and with neuron-norm sums just below k (19.984 to 19.998 at k = 20).

The paper's size, as an override::

    python runner.py configs/population_census.py --jobs 2 sweep.seeds=500 \\
        "sweep.zip={'data.k': list(range(6, 101)), 'model.width': list(range(6, 101))}"

is 95 x 500 = 47 500 runs. Measured at the large k (``descend`` with the polish, 4
initialisations at once, one thread, CPU seconds per initialisation; the sweep adds
its store, a few ms per run) on the two-core Intel Xeon (2026-12-02): k = 30 0.10 s
(mean 2790 steps), k = 50 0.86 s (8090), k = 70 3.0 s (11 900), k = 100 20 s (22 400
steps, 5.8 Newton steps each), peak 1.75 GB of memory at k = 100 (a Hessian of
(k^2, k^2) is 0.8 GB there; a polish builds the Hessians of the points trying
together in one batch only up to 1 GiB, ``plugins.population._descent.HESSIAN_BYTES``,
one at a time beyond); on the AMD EPYC of earlier stops 0.2, 1.5, 7.2 and 35.5 s. The
cost grows as about k^4 to k^5; interpolated between the measured k (and as k^3.9
below 30), the whole census is about 47 CPU hours on the Xeon (92 on the EPYC): a day
with ``--jobs 2``, 88 % of it at k >= 70 (plain gradient descent,
``algorithm.newton_below=None``: several times more, its slowest initialisations
needing over 10^5 steps from k = 20 on). The census's own Hessians at k = 100 are
10^4 x 10^4, 0.8 GB each.

Over-parameterised students (never run in the original):
``"sweep.zip={'data.k': [6, 8, 10], 'model.width': [7, 9, 11]}"``; gradient descent
converges slowly there (flat directions, where the polish is refused), so expect runs
to end at ``max_steps``
(counted ``not_converged`` by the census). Other teachers: ``data.teacher='orthonormal'``
(a random orthonormal V, one per seed). The step 5 / k diverges for k <= 3.
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
        # the 40 seeds of one k train as one stack (sweep key ``ensemble``; default 16)
        "sweep": {"zip": {"data.k": K, "model.width": K}, "seeds": 40, "ensemble": 40},
    },
)
