"""Width sweep of gradient descent in the NTK setting of Du, Zhai, Poczos & Singh (ICLR 2019).

What it shows: on ``n = 100`` points uniform on the unit sphere in ``d = 50``
dimensions with Gaussian labels, the network ``f(x) = (1/sqrt(m)) sum_r a_r
relu(w_r . x)`` with ``w_r ~ N(0, I)`` and ``a_r = +-1`` fixed (``init.second_layer=
rademacher``, ``algorithm.train=first``), loss ``sum_i (f(x_i) - y_i)^2 / 2``, trained
by full-batch gradient descent with step 0.1 for 400 steps, at widths ``m`` in 500,
1000, 2000, 4000, 8000 (3 seeds each: data and network):

* the loss decays at least like Du et al.'s ``exp(-lambda_0 eta t)``, with
  ``lambda_0 = lambda_min(H^inf)`` computed from the data (0.1837, the smallest of the
  three data sets); measured: ``loss(400) / loss(0)`` = 1.1e-8 to 7.0e-8 against the
  bound's 6.4e-4; the rate is that of ``exp(-2 lambda_0 eta t)`` (the loss follows
  ``exp(-2 eta lambda_min(H) t)`` with ``H(t)`` close to ``H^inf``), the paper's bound
  being a factor 2 loose in the exponent;
* the largest neuron move ``max_r ||w_r(t) - w_r(0)||`` shrinks like ``1/sqrt(m)``:
  final means 1.17, 0.78, 0.57, 0.40, 0.29, fitted slope -0.504 on log-log axes
  (``sqrt(m)`` times the move: 24.5 to 26.1);
* the fraction of activation-pattern entries ``1[w_r . x_i > 0]`` that changed falls
  with the width (0.035-0.046 at m = 500, 0.008-0.011 at m = 8000), and ``H(t)``
  stays near ``H(0)``: ``||H(T) - H(0)||_2`` 0.05-0.07 at m = 500, 0.009 at 8000
  (``gram_lambda_min`` stays within 0.006 of its start).

Metrics logged (every 10 steps and 10 log-spaced steps per decade): ``neuron_shift``,
``activation_patterns`` (with fractions), ``live_neurons``, ``ntk_gram`` (``H(t)``'s
smallest eigenvalue, its move from ``H(0)``, ``lambda_0``). ``python plot.py latest``
draws, through the ``ntk_width`` sweep analysis, ``ntk_loss`` (loss / loss(0) per
width, mean and min-max band over seeds, with ``exp(-lambda_0 eta t)`` and
``exp(-2 lambda_0 eta t)``), ``ntk_shift`` (the largest move over training, and at the
end against ``m`` with its fitted slope and an ``m^(-1/2)`` reference) and
``ntk_patterns``, plus every logged scalar as ``sweep_curves_<key>``;
``python postprocess.py latest`` writes ``ntk_width.csv`` (per width: final loss,
final move, move times ``sqrt(m)``, live neurons) and ``ntk_width.json`` (slope,
``lambda_0``).

Runtime: ``python runner.py configs/du_width.py --jobs 2`` took 3 min 46 s on the
two-core machine while it was shared (load average about 10), ``plot.py`` 48 s,
``postprocess.py`` 17 s. The paper's theorem needs ``m`` polynomial in ``n /
lambda_0``; the widths here are the report's.

The report's variant (the report seed's own code): ``n = d = 1000``, Gaussian rows
scaled to the sphere, ``y ~ N(0, 1)``, both layers ``N(0, 1)`` and trained, a bias on
the first layer (data ``normal`` with ``bias=True``; the output bias of its
``nn.Linear`` has no counterpart here), standard scaling, mean-squared loss, plain GD
with lr 0.1 for 100 full-batch epochs in float32 (torch's default), as overrides
(``REPORT_OVERRIDES`` below)::

    python runner.py configs/du_width.py --jobs 2 model.scaling=standard model.loss=mse \\
        "data={'name': 'normal', 'n': 1000, 'd': 1000, 'normalize_rows': True, 'bias': True}" \\
        init.second_layer=normal algorithm.train=both algorithm.lr=0.1 \\
        algorithm.dtype=float32 stoppers.max_steps.steps=100 \\
        stoppers.divergence.max_loss=1e300 loggers.scalars.every=1 \\
        "loggers.scalars.metrics={'neuron_shift': {}, \\
        'live_neurons': {}, 'activation_patterns': {'fractions': True}}"

What it shows is not NTK convergence: lr 0.1 on this unscaled network makes the loss
explode at the first steps (measured in float64 at n = d = 1000, m = 1000: 396 ->
2.6e4 -> 6.5e9 -> 3.1e8, live neurons 999, 999, 589, 20, then 0 from step 4; at n =
d = 200, m = 500: 2.9e2 -> 8.6e5 -> 4.6e7, all dead from step 3), every ReLU is then
dead on every input (``live_neurons`` is 0), and the network then outputs 0, so the
loss stays at ``mean(y^2)`` for good (the report's straight log-loss lines came from
its output bias decaying, which this model does not have).
``stoppers.divergence.max_loss=1e300`` keeps the exploding runs going. Cost: not
measured at full size (on the shared machine, load average about 13, one step at m =
1000 with the metrics took 40-70 s); by count, a step is ``4 n d m`` flops of
gradient descent plus ``2 n d m`` for each of the two pattern metrics, 12.4 TFLOP
for the five widths and 100 steps per seed, about 45 s per seed at the float32 matmul
rate of the README's GD benchmark on an idle machine (extrapolated).
"""

from configs.base import config as base
from relulab import merge

METRICS = {
    "neuron_shift": {},
    "activation_patterns": {"fractions": True},
    "live_neurons": {},
    "ntk_gram": {},
}

config = merge(
    base,
    {
        "experiment": "du_width",
        "seed": 0,
        "model": {"width": 1000, "scaling": "ntk", "loss": "half_sum"},
        "data": {"name": "sphere", "n": 100, "d": 50, "labels": "normal", "bias": False},
        "init": {"name": "normal", "scale": 1.0, "second_layer": "rademacher", "a_scale": 1.0},
        "algorithm": {"name": "gd_numpy", "optimizer": "sgd", "lr": 0.1, "train": "first"},
        "stoppers": {"max_steps": {"steps": 400}},
        "loggers": {
            "scalars": {"every": 10, "per_decade": 10, "metrics": METRICS},
            "snapshots": {"every": 0},
        },
        "sweep": {
            "grid": {"model.width": [500, 1000, 2000, 4000, 8000]},
            "seeds": 3,
        },
    },
)

REPORT_OVERRIDES = [
    "model.scaling=standard",
    "model.loss=mse",
    "data={'name': 'normal', 'n': 1000, 'd': 1000, 'normalize_rows': True, 'bias': True}",
    "init.second_layer=normal",
    "algorithm.train=both",
    "algorithm.lr=0.1",
    "algorithm.dtype=float32",
    "stoppers.max_steps.steps=100",
    "stoppers.divergence.max_loss=1e300",
    "loggers.scalars.every=1",
    "loggers.scalars.metrics={'neuron_shift': {}, 'live_neurons': {}, "
    "'activation_patterns': {'fractions': True}}",
]
"""Overrides that turn the sweep into the report's variant (see the docstring)."""
