"""Phase transition of exact recovery of a planted linear neuron (Wang et al. 2022).

What it shows: for data ``X = randn(n, d) / sqrt(n)`` and labels ``y = X w`` of a
planted unit vector ``w`` (data ``planted_linear``; the authors' script default, ``w``
the smallest right singular vector of ``X``), how often the minimum-norm
interpolant with a linear skip neuron (algorithm ``min_norm``: minimise
``||w0|| + sum_j ||W_j||`` s.t. ``sum_j D_j X W_j + X w0 = y``, the gated relaxation,
over the patterns of ``max(n, 50)`` Gaussian gates plus the all-ones pattern when an
exact LP finds it attainable) is ``w`` itself, as a function of ``(n, d)``. Each
trial is its own run with its own seed (config seed + 0, 1, ...: data, gates), so a
cell's data do not depend on the grid (the original draws one stream over the
whole grid).

Solver: ``algorithm.solver=auto``, the certified interior point of
``plugins/convex/_basis_pursuit.py`` (relative duality gap <= 1e-8, interpolation
residual <= 1e-10 ||y||), falling back to cvxpy/Clarabel for a solve it does not
certify; ``min_norm.solver_code`` records which answered (0: interior point, 1:
Clarabel) and ``min_norm.relative_gap`` the certified gap. Its objective agrees
with Clarabel's to 1e-4 relative or better (tests; 1e-8 typically) and each lies
within the other's dual bound. Every run also records the planted certificate:
``planted_excess_min = ||w|| - P`` (positive: ``w`` is provably not the optimum)
and ``planted_excess_max = ||w|| - D`` (``w`` is optimal to within it), so a
recovery decision near the boundary does not rest on solver accuracy; and
``test_distance``, the RMS distance between the recovered ReLU network and
``x . w`` on 100 fresh points (``data.n_test``).

Recovery is recorded two ways per run (indicator ``min_norm``, in ``summary.csv`` and
``groups.csv``): ``min_norm.recovered_strict`` (the paper's test: ``w0 = w`` and
every ReLU group zero, atol 1e-4) and ``min_norm.recovered_merged`` (the all-ones
pattern's group added into ``w0`` first: with that pattern the optimum is not
unique, and interior-point solvers split ``w`` between the two). The figure
``python plot.py latest`` draws the **strict** recovery probability
(``sweep.success``) as a heat map over (n, d) and, as in the paper, as filled
contours at levels 0, 0.1, ..., 1 with the line n = d
(``plots/sweep_success_contour.png``); ``sweep.success.key=
min_norm.recovered_merged`` draws the merged one. ``groups.csv`` has both means.

Default grid (scaled down): n in 10, 20, ..., 120, d in 5, 10, ..., 30, 5 trials:
360 runs, measured 52 s with ``--jobs 2`` on the two-core machine at load 3, 79 s
at load 10 (74 s with Clarabel), every solve certified by the interior point. It
shows the transition: strict recovery in every trial from n = 90 on, almost none
at n <= 2d (0.2 at (10, 5), 0 elsewhere); merged and strict recovery differ in two
cells only (0.8 vs 1.0 at (40, 15) and (80, 30)); the same
numbers as with Clarabel. The paper's grid, as an override::

    python runner.py configs/phase_transition.py --jobs 2 sweep.seeds=10 \\
        "sweep.grid={'data.n': [$(seq -s, 10 10 400)], 'data.d': [$(seq -s, 10 10 100)]}"

is 40 x 10 x 10 = 4000 runs. Measured end to end (2026-12-02): 51 min wall with
``--jobs 2`` on the two-core machine, run at ``nice 15`` while four other jobs kept
the load average at 6-10, so the sweep got 0.51 of a core on average (1583 CPU
seconds in all, 116 MB peak resident per process): about 15 min on two idle cores.
All 4000 runs finished, every solve certified by the interior point (no fallback).
Strict recovery reaches one half from n = 30, 50, 80, 110, 130, 160, 180, 210, 240,
260 at d = 10, 20, ..., 100 (n about 2.6 d; merged recovery: the same n); the two
tests differ in 7 of the 400 cells, by one or two trials of ten; 66 % of all runs
recover ``w``. The figure is ``plots/sweep_success_contour.png`` of that sweep
(``plot.py`` on it: 2 min 35 s, reading only the ``min_norm`` indicator of each
run). A run's wall time is 0.13 s at n = 10, 0.3 s at 100, 0.6 s at 200, 1.4 s at
400 (mean over d, loaded), of which the solve is about 1 s at (400, 100) and the
rest the run store's synced writes and set-up. With
Clarabel (``algorithm.solver=cvxpy``) single solves took 0.3 s (n = 100, d = 20),
1.8 s (100, 50), 8 s (200, 50), 29 s (400, 50) and 65 s (400, 100): about 7 hours
for the grid, extrapolated; above n = 200 Clarabel often ends
``optimal_inaccurate`` (kept only when its interpolation residual is below
``accept_tol``, ``status_code`` 1). Over an earlier single trial of the grid (400
runs), strict and merged recovery agree in every cell (recovery 0.66 of the runs);
no failure had its optimal value within 1e-4 of ``||w||`` (the closest 1.1e-4,
decided by the gap of 1e-8), every recovered run certified ``w`` optimal to 4e-9,
and the recovered networks are within 1.4e-8 of ``x . w`` on fresh points
(failures: median 0.10). Other
settings of the paper: ``data.planted=gaussian`` (``--optw 0``), ``data.inputs=cubed|whitened|
cubed_whitened``, ``data.noise=sigma``, ``algorithm.relaxation=none`` (the cone
constraints: exact ReLU, solved by cvxpy), ``algorithm.network=plain|normalization``
(no skip neuron; normalisation layers).
"""

from configs.base import config as base
from relulab import merge

config = merge(
    base,
    {
        "experiment": "phase_transition",
        "seed": 0,
        "model": {"width": 1, "scaling": "standard", "loss": "mse"},
        "data": {
            "name": "planted_linear",
            "n": 40,
            "d": 10,
            "inputs": "gaussian",
            "planted": "smallest_singular",
            "noise": 0.0,
            "n_test": 100,
        },
        "algorithm": {
            "name": "min_norm",
            "network": "skip",
            "relaxation": "gated",
            "solver": "auto",
            "n_patterns": None,
        },
        "stoppers": {"solved": {}, "max_steps": {"steps": 5}},
        "loggers": {"scalars": {"every": 1}, "snapshots": {"every": 1}},
        "sweep": {
            "grid": {"data.n": list(range(10, 121, 10)), "data.d": list(range(5, 31, 5))},
            "seeds": 5,
            "success": {"key": "min_norm.recovered_strict", "above": 0.5},
        },
    },
)
