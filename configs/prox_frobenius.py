"""Proximal-point steps with the Frobenius distance fit a 1-D sinus.

What it shows: every outer step solves W_{k+1} = argmin_W L(W) + |W - W_k|_F^2 / (gamma d m)
approximately, by at most 100 AdamW updates of both layers (Chizat & Bach's proximal
discretisation of training; Gradient-Work's ``algo_prox.py``, with its gamma = 0.1). On
the 20 points of Gradient-Work's ``sinus`` data (y = sin(10 x - pi/2) + 0.2 x - 0.5 on
[-0.5, 0.5], a bias column appended), a width-100 network with a small first layer
(W0 ~ N(0, 0.1^2): the neurons start crowded near the origin) and a0 = +-1 goes from
loss 1.05 to 0.29 after one step, 5.1e-3 at step 10 and 1.9e-3 at step 20, where it
levels off, never rising from one outer step to the next: about 2 s of stepping, 6 s
with start-up, on two cores. ``plot.py`` draws ``inner_loop``: within each step the
inner objective J falls while the distance to W_k grows, and the inner learning rate
(``lr_decay=0.9``: times 0.9 each time J does not decrease) drops from 0.01 to 2.8e-3
during the first step and stays there; from step 29 the inner loops stop early on
``inner_tol=1e-7``. Without the decay (``algorithm.lr_decay=1``) the loss falls faster
at first (2.9e-3 at step 10, 1.4e-3 at step 40) but rises at 13 outer steps: AdamW's
fixed-size updates overshoot, which an exactly solved proximal step never does.

Parameters: for small gamma one proximal step is a gradient step of size
gamma d m / 2 (here 10), an implicit Euler step of the gradient flow; 100 AdamW updates
of size ~lr solve it only roughly (and ``a`` has no proximal term). A smaller gamma
holds W closer to W_k (``algorithm.gamma=0.01``: 4.7e-3 at step 40), a larger one
lets it go (``algorithm.gamma=1``: 1.5e-4 at step 40, still monotone).
``algorithm.train=first`` keeps a = +-1 (9.8e-3 at step 40); Gradient-Work's
``onlyTrainFirstLayer`` is inverted in its code (True trains both layers, as here).

Larger: ``model.width=1000 stoppers.max_steps.steps=100`` reaches 1.0e-4 in 7 s of
stepping (``configs/prox_wasserstein.py`` and ``configs/prox_sliced.py`` run the same
problem with the other distances).
"""

from configs.base import config as base
from relulab import merge

config = merge(
    base,
    {
        "experiment": "prox_frobenius",
        "seed": 0,
        "model": {"width": 100, "scaling": "standard", "loss": "mse"},
        "data": {"name": "sinus", "n": 20},
        "init": {"name": "normal", "scale": 0.1},
        "algorithm": {
            "name": "proxpoint",
            "distance": "frobenius",
            "gamma": 0.1,
            "inner_steps": 100,
            "inner_tol": 1e-7,
            "optimizer": "adamw",
            "lr": 0.01,
            "lr_decay": 0.9,
        },
        "stoppers": {"max_steps": {"steps": 40}},
        "loggers": {
            "scalars": {"every": 1},
            "snapshots": {"every": 5},
            "records": {"every": 1},
        },
    },
)
