"""Proximal-point steps with the sliced Wasserstein distance of the neurons fit a 1-D sinus.

What it shows: the problem of ``configs/prox_frobenius.py`` (20 ``sinus`` points, width
100, W0 ~ N(0, 0.1^2), a0 = +-1, at most 100 AdamW updates per step, ``lr_decay=0.9``)
with the proximal term SW_2^2(mu_W, mu_{W_k}) / gamma: the squared sliced 2-Wasserstein
distance between the neurons' empirical measures (signs apart), the mean over 20 random
unit directions of the plane of the 1-D transport costs of the projected neurons (sorted
matching), with new directions for each proximal problem. The loss goes from 1.05 to
0.27 after one step, 2.9e-3 at step 10 and levels off at 1.7e-3 from step 20, never
rising: about 4 s of stepping, 8 s with start-up, on two cores. From step 14 the inner
objective stalls and ``lr_decay`` shrinks the inner rate (2.2e-5 at step 20); the inner
loops then often stop early on ``inner_tol=1e-7``. Without the decay
(``algorithm.lr_decay=1``) the loss reaches 1.0e-3 at step 40 but rises at 15 steps.

Parameters: SW_2^2 <= W_2^2, and for neurons moving in no preferred direction
SW_2^2 ~ W_2^2 / d, so gamma = 0.1 (half of ``configs/prox_wasserstein.py``'s 0.2, equal to
the Frobenius config's) weighs the proximal term alike. Gradient-Work uses POT's
SW_2 (not squared) with 20000 directions; its square root has an infinite derivative
where every inner loop starts. ``algorithm.distance_options.n_projections`` sets the
number of directions (the cost of a call grows with it).

Larger: ``model.width=1000 stoppers.max_steps.steps=100`` reaches 2.9e-5 in 31 s of
stepping.
"""

from configs.prox_frobenius import config as frobenius
from relulab import merge

config = merge(
    frobenius,  # the same problem, optimizer and cadences; another distance
    {
        "experiment": "prox_sliced",
        "algorithm": {
            "distance": "sliced",
            "distance_options": {"n_projections": 20},
            "gamma": 0.1,
        },
    },
)
