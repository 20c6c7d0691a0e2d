"""PLACEHOLDER"""

from configs.overparam_grid import config as grid
from relulab import merge

PAPER_OVERRIDES = ["sweep.seeds=5", "stoppers.max_steps.steps=24998"]
"""The paper's Fig. 3 length: 24 999 recorded steps (the last after 24 998 updates), 5 runs."""

TWO_LAYER_OVERRIDES = [
    "algorithm.train=both",
    "init.second_layer=uniform",
    "algorithm.lr=0.002",
]
"""The paper's two-layer network (BasicNet2L): both layers trained, lr 0.002."""

config = merge(
    {key: value for key, value in grid.items() if key not in ("sweep", "loggers")},
    {
        "experiment": "relu_regions",
        "data": {"d": 20},
        "model": {"width": 200},
        "stoppers": {"max_steps": {"steps": 1000}},
        "loggers": {
            "scalars": {
                "every": 1,
                "metrics": {
                    "loss_change": {},
                    "activation_patterns": {},
                    "corners": {"threshold": 1e-8},
                    "grad_change": {},
                    "neuron_shift": {},
                    "preact_norm": {},
                },
            },
            "snapshots": {"every": 0},
        },
        "sweep": {"grid": {"model.width": [200, 752, 2828]}, "seeds": 3},
    },
)
