"""Gradient descent fits scikit-learn's 8x8 digits by one-hot regression.

What it shows: a real data set that runs out of the box (``pip install
"relulab[sklearn]"``; the 1797 images ship inside scikit-learn, nothing is downloaded).
500 training and 300 held-out images of all ten digits (drawn with the seed), pixels
scaled to [0, 1], a bias column (d = 65), targets one-hot (k = 10 outputs): a width-200
network with NTK scaling (1/sqrt(m)), W0 ~ N(0, 1) and a0 = +-1, trained on both layers
by full-batch AdamW (lr 0.03) for 1000 steps. The training mean-squared error (mean
over points and outputs) falls from 11.6 to 0.006 while the held-out loss
(``test_loss``, logged every step) levels off near 0.04, half of the 0.09 of always
predicting 0.1 per class. About 7 s on two cores shared with other work.

Variations: ``data.pca=16`` fits the projection on the 16 top principal directions
(d = 17); ``"data.classes=[3, 8]" data.target=sign`` is the binary 3-vs-8 problem
with +-1 targets; ``data.n=0`` uses every image not held out (1497).
Larger: ``data.n=0 model.width=1000 stoppers.max_steps.steps=5000`` (every image
not held out): about 9 minutes here, estimated from this run (cost linear in n,
width and steps), not measured.
"""

from configs.base import config as base
from relulab import merge

config = merge(
    base,
    {
        "experiment": "gd_digits",
        "seed": 0,
        "model": {"width": 200, "scaling": "ntk", "loss": "mse"},
        "data": {"name": "digits", "n": 500, "n_test": 300, "target": "onehot"},
        "init": {"name": "normal"},
        "algorithm": {"name": "gd", "optimizer": "adamw", "lr": 0.03},
        "stoppers": {"max_steps": {"steps": 1000}},
        "loggers": {
            "scalars": {"every": 1, "metrics": ["test_loss"]},
            "snapshots": {"every": 100},
        },
    },
)
