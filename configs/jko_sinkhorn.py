"""Entropic JKO flow of a ReLU network's masses on a 30 x 30 grid fits a 1-D sinus.

What it shows: the network is a signed measure on a fixed 30 x 30 grid of the
(weight, bias) plane, [-2, 2]^2, every position carrying a positive and a negative
neuron of mass 1 (so f = 0 at the start). Each step is one entropic JKO step of
the mean-squared loss (Peyré 2015: KL-proximal Sinkhorn iterations, log-domain,
separable kernel applied axis by axis, positive and negative mass transported
separately), with the KL prox solved by the ``scipy`` prox plugin. On the 15 evenly
spaced points of Gradient-Work's ``sinus`` data (y = sin(10 x - pi/2) + 0.2 x - 0.5
on [-0.5, 0.5]) the loss goes from 0.55 to 6e-3 in 10 steps and levels off at
4.3e-3 (the entropic diffusion balances the fit), about one second of stepping on
two cores for the 100 steps. Snapshots are log-spaced; ``plot.py``
draws the loss, the fit, and ``jko_mass``: heat maps of the positive and negative
mass over the grid at several steps, where mass gathers on the neurons whose
kinks (w x + b = 0) sit where the curve bends. The scalars record the mass per sign
each step; the records stream keeps the marginal violation and F of every inner
iteration.

Parameters: the grid spacing is h = 4/29 = 0.138 (h^2 = 0.019); gamma = 0.01 ~
h^2 / 2 (neighbouring positions have kernel weight exp(-h^2/gamma) = 0.15), tau =
0.3, so sigma = tau / gamma = 30 multiplies the loss in the KL prox. Ten inner
iterations per step and the prox point as the new masses are Gradient-Work's
choices (``algorithm.max_inner``, ``algorithm.masses``): the inner iteration is not
converged (relative marginal violation 1e-3 to 5e-5), so each sign's mass drifts
by a few tenths of a percent over the run (``mass_pos``, ``mass_neg``);
``algorithm.masses=coupling`` conserves it exactly but needs converged inner
iterations: after ten, that coupling is feasible but far from the step's minimiser
and the loss rises (0.55 -> 1.3); with ``algorithm.max_inner=300`` (violation 1e-5,
5 s for 30 steps) both choices fit alike (6.7e-3 and 5.2e-3 at step 30). A larger
``tau / gamma`` fits closer (``tau=1``: 5e-4) and a smaller one levels off higher
(``tau=0.1, gamma=0.005``: 1.3e-2).

Gradient-Work conversion (``vmerckle/Gradient-Work``, ``JKO/``): its prox solvers
minimise F + (tau_GW / gamma) KL(p | K b), i.e. relulab's sigma = tau / gamma equals
gamma / tau_GW, so its (tau_GW, gamma) is relulab's tau = gamma^2 / tau_GW with the
same gamma. This config's (tau, gamma) = (0.3, 0.01) is Gradient-Work's
tau_GW = gamma^2 / tau = 3.3e-4. Gradient-Work also floors the kernel at 1e-6 and
lets positive and negative mass exchange (``algorithm.couple_signs=True``); relulab
keeps the exact kernel.
"""

from configs.base import config as base
from relulab import merge

config = merge(
    base,
    {
        "experiment": "jko_sinkhorn",
        "seed": 0,
        "model": {"scaling": "standard", "loss": "mse"},
        "data": {"name": "sinus", "n": 15, "bias": True},
        "init": {"name": "grid", "per_axis": 30, "extent": 2.0, "signs": "both", "mass": 1.0},
        "algorithm": {
            "name": "jko",
            "tau": 0.3,
            "gamma": 0.01,
            "proxf": "scipy",
            "max_inner": 10,
            "inner_tol": 1e-6,
        },
        "stoppers": {"max_steps": {"steps": 100}},
        "loggers": {
            "scalars": {"every": 1},
            "snapshots": {"every": 25, "per_decade": 4},
            "records": {"every": 1},
        },
    },
)
