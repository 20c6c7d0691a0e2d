"""Training-dynamics metrics and the sweep analyses of the over-parameterisation experiments.

Metrics (``loggers.scalars.metrics``), after Polaczyk & Cyranka (TMLR, "Improved
overparametrization bounds for global convergence of SGD for shallow neural
networks", code ``MIMUW-RL/improved_overparametrization_tmlr``) and Du, Zhai, Poczos
& Singh (ICLR 2019, "Gradient descent provably optimizes over-parameterized neural
networks"):

=======================  =========================================================
``activation_patterns``  ``hamming_init``, ``hamming_prev``, ``patterns_visited``
``corners``              ``corners`` (``|x_i . w_r| < 1e-8``)
``loss_change``          ``rel_loss_change``
``grad_change``          ``grad_change``, ``grad_norm_sum``
``neuron_shift``         ``neuron_shift_max``, ``neuron_shift_fro``
``preact_norm``          ``preact_norm`` (``||X W||_F``)
``live_neurons``         ``live_neurons``, ``live_frac``
``ntk_gram``             ``gram_lambda_min``, ``gram_change``, ``gram_lambda_0``
=======================  =========================================================

Sweep analyses: ``ntk_width`` (``configs/du_width.py``) and ``corner_grid``
(``configs/overparam_grid.py``); see :mod:`plugins.dynamics._analyses`. The math is
in :mod:`core.quantities`; what the stateful metrics do across a resume is in
:mod:`plugins.dynamics._metrics`.
"""

from core.hookspecs import hookimpl

from ._analyses import CornerGrid, NtkWidth, final_value, fit_slope
from ._metrics import (
    ActivationPatterns,
    Corners,
    GradChange,
    LiveNeurons,
    LossChange,
    NeuronShift,
    NtkGram,
    PreactNorm,
)

__all__ = [
    "ActivationPatterns",
    "Corners",
    "LossChange",
    "GradChange",
    "NeuronShift",
    "PreactNorm",
    "LiveNeurons",
    "NtkGram",
    "NtkWidth",
    "CornerGrid",
    "final_value",
    "fit_slope",
]


@hookimpl
def relulab_metrics():
    return [
        ActivationPatterns,
        Corners,
        LossChange,
        GradChange,
        NeuronShift,
        PreactNorm,
        LiveNeurons,
        NtkGram,
    ]


@hookimpl
def relulab_sweep_analyses():
    return [NtkWidth, CornerGrid]
