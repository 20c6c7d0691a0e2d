"""Globally optimal regularised training on the 1-D sinus, as one convex program.

What it shows: on the 20 evenly spaced points of Gradient-Work's ``sinus`` data
(y = sin(10 x - pi/2) + 0.2 x - 0.5 on [-0.5, 0.5], a bias column appended), the
regularised training problem

    min_{W, a}  MSE(W, a) + beta/2 (|W|_F^2 + |a|^2),   beta = 1e-2

over two-layer ReLU networks of any width is solved exactly as the convex
group-lasso program of Pilanci & Ergen (ICML 2020) over all 39 activation patterns
of the data (``patterns="exact"``: the prefixes and suffixes of the sorted points,
78 groups with cone constraints), by cvxpy with Clarabel, in one step (about 1.7 s,
mostly cvxpy's start-up; the solve itself takes about 50 ms). The stopper
``solved`` ends the run after it. The network read off the solution has 10 neurons
(snapshots are padded with zero neurons to ``model.width`` = 100, at least the
number of groups; ``active`` tells them apart), MSE 0.1679, and regularised
objective 0.326691 (``convex_objective`` and ``nonconvex_objective`` agree to
1e-11, the duality gap at Clarabel's multipliers is 4e-11): no network of any
width does better.

Gradient descent on the same objective (``configs/gd_sinus.py`` with
``algorithm.name=gd_numpy algorithm.weight_decay=1e-2``, width 300, heavy-ball
momentum 0.9) stays above it and approaches it: lr 0.002, 20 000 steps 0.327785;
60 000 steps 0.326697 (6e-6 above); lr 0.005, 20 000 steps 0.326704.

``beta`` is the weight decay of the run's loss convention (``model.loss``): the
program's group-lasso weight is beta / (2c) with c the loss constant (here
``mse``, c = 1/n: 0.1). With ``algorithm.beta=1e-4`` the fit is close (MSE 2.2e-4,
34 neurons, objective 5.79e-3) but gradient descent is slow to shrink the weights
(the decay's time scale is 1 / (lr beta) = 5e6 steps): 0.0432 after 5 000 steps,
0.0364 after 50 000. ``algorithm.patterns=sampled algorithm.n_patterns=50`` solves
over the patterns of 50 Gaussian gates; ``algorithm.patterns=neurons`` iterates
Gradient-Work's convex step from the initial network's patterns (a local fixed
point); ``algorithm.relaxation=gated`` drops the cone constraints (a lower bound
whose recovered network need not fit).
"""

from configs.base import config as base
from relulab import merge

config = merge(
    base,
    {
        "experiment": "convex_sinus",
        "seed": 0,
        "model": {"width": 100, "scaling": "standard", "loss": "mse"},
        "data": {"name": "sinus", "n": 20, "bias": True},
        "algorithm": {
            "name": "convex",
            "beta": 1e-2,
            "patterns": "exact",
            "relaxation": "none",
            "solver": "cvxpy",
        },
        "stoppers": {"solved": {}, "max_steps": {"steps": 100}},
        "loggers": {"scalars": {"every": 1}, "snapshots": {"every": 1}},
    },
)
