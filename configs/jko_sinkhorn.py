"""Entropic JKO flow of a ReLU network's masses on a 30 x 30 grid fits a 1-D sinus.

What it shows: the network is a signed measure on a fixed 30 x 30 grid of the
(weight, bias) plane, [-2, 2]^2, every position carrying a positive and a negative
neuron of mass 1 (so f = 0 at the start). Each step is one entropic JKO step of
the mean-squared loss (Peyré 2015), positive and negative mass transported
separately, solved to convergence by Newton's method on the step's 15-dimensional
dual (``algorithm.solver="newton"``: one multiplier per data point, log-domain
scalings, the separable kernel applied axis by axis; see ``plugins/jko/_step_newton.py``),
warm-started from the previous step's multiplier and Hessian. On the 15 evenly
spaced points of
Gradient-Work's ``sinus`` data (y = sin(10 x - pi/2) + 0.2 x - 0.5 on [-0.5, 0.5])
the loss goes from 0.55 to 0.128 after one step, 7.6e-3 after 10, 5.3e-3 after 30
and 4.6e-3 after 100 (the entropic diffusion balances the fit), about 1.5 s for the
100 steps on two shared cores. Snapshots are log-spaced; ``plot.py`` draws the
loss, the fit, and ``jko_mass``: heat maps of the positive and negative mass over
the grid at several steps, where mass gathers on the neurons whose kinks
(w x + b = 0) sit where the curve bends. The scalars record per step the mass per
sign, ``inner_iters`` (Newton iterations, most of them chord steps with the
previous step's Hessian: 6 for the first step, 4 after) and ``violation`` (Peyré's
relative marginal error between the coupling's row marginal and the KL prox of
K b, below 3e-14 on every step), drawn per step by the ``jko_convergence`` plot;
the records stream keeps every Newton iteration (largest log-mass change,
gradient norm, step length, whether the Hessian was fresh, F, mass).

Distance from the exact steps: each step stops once a Newton step changes no
log-mass by more than ``inner_tol = 1e-9`` (the step is taken, so the error left
is of order 1e-18); its masses are within 1.2e-14 (relative L1, each of 30 steps)
of steps iterated to rounding (``inner_tol=0``), and the first step is within
6.5e-14 of Peyré's scaling iterations run to a marginal violation of 1e-13 on the
dense kernel (``tests/plugins/jko/test_jko_reference.py``). ``masses="coupling"``: the new masses
are the row marginal of the step's coupling, whose column marginal is the old masses
exactly, so each sign keeps its mass to 1e-14 over the run.

Today's previous default, reachable for comparison (``algorithm.solver=sinkhorn
algorithm.max_inner=10 algorithm.warm_start=False algorithm.masses=prox``), took ten
scaling iterations from b = 1 and the last prox point as the masses: relative
marginal violation 1.9e-3 after the first step, whose loss (0.121) is 5% below the
exact step's, masses off by 7e-4 (relative L1), and each sign's mass drifting by
0.34% over 100 steps, in 4 times the time of the converged flow (5.8 s).

Parameters: the grid spacing is h = 4/29 = 0.138 (h^2 = 0.019); gamma = 0.01 ~
h^2 / 2 (neighbouring positions have kernel weight exp(-h^2/gamma) = 0.15), tau =
0.3, so sigma = tau / gamma = 30 multiplies the loss in the KL prox. A larger
``tau / gamma`` fits closer (``tau=1``: 5e-4) and a smaller one levels off higher
(``tau=0.1, gamma=0.005``: 1.3e-2).

Relulab's problem and Gradient-Work's are different problems. Here positive and
negative mass are two measures that never exchange mass (with fixed output signs
they do not in the mean-field flow) and the kernel is exact. Gradient-Work
(``vmerckle/Gradient-Work``, ``JKO/``) uses one kernel over both signs, so mass
moves between a positive and a negative neuron at the same position in one step
(``algorithm.couple_signs=True``), floors the kernel at 1e-6, and stops its scaling
iterations after 4 on this problem. On this config's data the losses at steps
1, 10, 30 are:

- relulab (separate signs, converged): 1.2790e-1, 7.624e-3, 5.330e-3;
- coupled signs, converged steps: 1.23066e-2, 1.22962e-2, 1.23319e-2;
- Gradient-Work's convention and rule (``configs/jko_gradient_work.py``):
  1.23066e-2, 1.22961e-2, 1.23311e-2 (its own code: 1.23075e-2, 1.22968e-2,
  1.23319e-2).

With coupled signs the first step already cancels most of the two measures, the
loss is at 1.23e-2 after one step and then rises slowly; with separate signs it
keeps decreasing, to 4.6e-3.

Gradient-Work conversion: its prox solvers minimise F + (tau_GW / gamma) KL(p | K b),
i.e. relulab's sigma = tau / gamma equals gamma / tau_GW, so its (tau_GW, gamma) is
relulab's tau = gamma^2 / tau_GW with the same gamma. This config's (tau, gamma) =
(0.3, 0.01) is Gradient-Work's tau_GW = gamma^2 / tau = 3.3e-4.
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
            "solver": "newton",
            "inner_tol": 1e-9,
            "masses": "coupling",
        },
        "stoppers": {"max_steps": {"steps": 100}},
        "loggers": {
            "scalars": {"every": 1},
            "snapshots": {"every": 25, "per_decade": 4},
            "records": {"every": 1},
        },
    },
)
