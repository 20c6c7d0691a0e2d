"""Gradient descent fits MNIST by one-hot regression (needs the MNIST files; no download).

Before running: put ``train-images-idx3-ubyte`` and ``train-labels-idx1-ubyte``
(as distributed, ``.gz`` or not) in ``data/mnist/`` under the working directory, or
point ``data.path`` at another folder or at an ``.npz`` with arrays ``x`` (N, 28, 28)
and ``y`` (N,); without them the run stops before making a folder, with one line
saying what to put where. relulab never downloads them.

What it shows: MNIST fitted by regression as Gradient-Work does: 2000 training and
1000 held-out images of all ten digits drawn with the seed, pixels scaled to [0, 1]
and projected on the training set's top 50 principal directions (numpy SVD), a bias
column (d = 51), one-hot targets (k = 10): a width-300 network with NTK scaling,
W0 ~ N(0, 1) and a0 = +-1, trained on both layers by full-batch AdamW (lr 0.03)
for 1000 steps, the held-out loss logged every step (``test_loss``). The same
recipe as ``configs/gd_digits.py`` (which runs out of the box) at a larger size:
about 2.5 minutes on two busy cores (timed on random images of MNIST's size and
format, 0.14 s a step; the real files were not available here).

Full size: ``data.n=0 data.pca=0 model.width=2000`` (all 60000 training images,
784 pixels): per step about 60000 x 785 x 2000 x 6 = 0.57 TFLOP, about 10 s a
step on two cores at the ~60 GFLOP/s of their matmul (about 3 hours for 1000
steps, estimated); on a GPU add ``algorithm.device=cuda``.
"""

from configs.base import config as base
from relulab import merge

config = merge(
    base,
    {
        "experiment": "gd_mnist",
        "seed": 0,
        "model": {"width": 300, "scaling": "ntk", "loss": "mse"},
        "data": {
            "name": "mnist",
            "path": "data/mnist",
            "n": 2000,
            "n_test": 1000,
            "pca": 50,
            "target": "onehot",
        },
        "init": {"name": "normal"},
        "algorithm": {"name": "gd", "optimizer": "adamw", "lr": 0.03},
        "stoppers": {"max_steps": {"steps": 1000}},
        "loggers": {
            "scalars": {"every": 1, "metrics": ["test_loss"]},
            "snapshots": {"every": 100},
        },
    },
)
