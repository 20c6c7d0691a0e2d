"""Gradient-Work's entropic JKO setting on the flagship's data, reproduced in relulab.

What it is: ``vmerckle/Gradient-Work``'s ``JKO/`` code path (its cvxpy prox, the
reference; see ``../shared/EXPERIMENTS.md``) on the data and grid of
``configs/jko_sinkhorn.py``: the 15 ``sinus`` points, a 30 x 30 grid of
[-2, 2]^2 in the (weight, bias) plane, a positive and a negative neuron of mass 1
at every position. What differs from relulab's flagship is Gradient-Work's
convention, which makes it a different problem:

- one kernel over both signs (``algorithm.couple_signs=True``): mass moves between
  the positive and the negative neuron of a position within one step;
- the kernel floored at 1e-6 (``algorithm.kernel_floor=1e-6``, a dense 1800 x 1800
  kernel): every position reaches every other one;
- Peyré's scaling iterations from b = 1 (``solver="sinkhorn"``,
  ``warm_start=False``), stopped when both relative marginal errors are below 1e-6 or
  after 10 iterations (its ``interiter``; on this problem it stops after 4), the last
  prox point as the new masses (``masses="prox"``, so the mass drifts by about the
  marginal violation).

How tau was converted: Gradient-Work's prox solvers minimise
F + (tau_GW / gamma) KL(p | K b) with F = ||yhat - y||^2 / n, while relulab's prox
minimises sigma F + KL(p | K b) with sigma = tau / gamma (Peyré's time step tau).
Dividing Gradient-Work's objective by tau_GW / gamma gives sigma = gamma / tau_GW,
so relulab's tau = gamma^2 / tau_GW. Gradient-Work's (tau_GW, gamma) =
(3.3333e-4, 0.01) is tau = 1e-4 / 3.3333e-4 = 0.3, gamma = 0.01 here (sigma = 30).

Losses (Gradient-Work's cvxpy prox at steps 1, 5, 10, 20, 30: 1.23075e-2,
1.22930e-2, 1.22968e-2, 1.23158e-2, 1.23319e-2): this config gives 1.23066e-2,
1.22923e-2, 1.22961e-2, 1.23151e-2, 1.23311e-2 (within 7.4e-5 relative; the scipy
prox here is Newton on the prox's dual, Gradient-Work's is Clarabel's interior
point), about 4.5 s for 30 steps on two shared cores (the dense kernel). The exact
kernel (``algorithm.kernel_floor=0 algorithm.kernel=auto``, separable, 1.8 s)
changes them by at most 4e-5 relative (1.23316e-2 at step 30): the floor moves little
mass here. ``tests/configs/test_jko_gradient_work.py`` checks the five losses.
"""

from configs.jko_sinkhorn import config as flagship
from relulab import merge

config = merge(
    flagship,
    {
        "experiment": "jko_gradient_work",
        "algorithm": {
            "solver": "sinkhorn",
            "couple_signs": True,
            "kernel_floor": 1e-6,
            "kernel": "dense",
            "warm_start": False,
            "masses": "prox",
            "max_inner": 10,
            "inner_tol": 1e-6,
        },
        "stoppers": {"max_steps": {"steps": 30}},
    },
)
