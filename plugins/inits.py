r"""Initialisations of the two-layer network: random first layers and the 2-D grid.

Every init returns ``W0`` of shape ``(d, m)`` (column ``r`` is neuron ``w_r``; ``d``
counts the bias column) and ``a0`` of shape ``(m,)`` when ``k == 1`` else
``(m, k)``, both float64. The random inits draw ``W0`` first, then ``a0``, from the
given ``rng``, and share the second-layer options :data:`SECOND_LAYER_PARAMS`
(implemented once in :func:`draw_second_layer`):

- ``second_layer``: ``"signed"`` (magnitude ``a_scale``, exactly ``floor(m k / 2)``
  entries negative at random positions: the fixed layer of Polaczyk & Cyranka's
  one-layer net), ``"rademacher"`` (independent signs, the ``a_r ~ unif{-1, 1}`` of
  Du et al. 2019), ``"positive"``, ``"normal"`` (N(0, a_scale^2)) or ``"uniform"``
  (U[-a_scale, a_scale]);
- ``a_scale`` multiplied by 1, ``1/sqrt(m)`` or ``1/m`` (``a_scale_mode``).

Published settings:

- Polaczyk & Cyranka (TMLR), one trainable layer: ``normal`` (scale 1) with
  ``second_layer="signed", a_scale_mode="inv_sqrt_m"``; two trainable layers:
  ``second_layer="uniform", a_scale_mode="inv_sqrt_m"`` (torch's default
  ``nn.Linear`` initialisation of a layer with ``m`` inputs).
- Du et al. report seed: ``normal`` with ``second_layer="normal"``.
- Safran & Shamir census: ``xavier`` with ``mode="fan_in"`` on ``d = k`` inputs
  (N(0, 1/k)) and ``second_layer="positive"`` (the student sums its ReLUs).
"""

import math

import numpy as np

from core.components import Init
from core.errors import ConfigError
from core.hookspecs import hookimpl
from core.params import Param

__all__ = [
    "SECOND_LAYERS",
    "A_SCALE_MODES",
    "SECOND_LAYER_PARAMS",
    "second_layer_magnitude",
    "draw_second_layer",
    "NormalInit",
    "UniformInit",
    "XavierInit",
    "GridInit",
]

SECOND_LAYERS = ("signed", "rademacher", "positive", "normal", "uniform")
A_SCALE_MODES = ("constant", "inv_sqrt_m", "inv_m")

SECOND_LAYER_PARAMS = (
    Param(
        "second_layer",
        str,
        "signed",
        "second layer: balanced signs, random signs, +1, Gaussian or uniform",
        choices=SECOND_LAYERS,
    ),
    Param("a_scale", float, 1.0, "magnitude (or standard deviation / bound) of a0", low=0),
    Param(
        "a_scale_mode",
        str,
        "constant",
        "a_scale multiplied by 1, 1/sqrt(m) or 1/m",
        choices=A_SCALE_MODES,
    ),
)


def second_layer_magnitude(m, a_scale=1.0, a_scale_mode="constant"):
    """``a_scale`` times 1, ``1/sqrt(m)`` or ``1/m`` for width ``m``."""
    factor = {"constant": 1.0, "inv_sqrt_m": 1.0 / math.sqrt(m), "inv_m": 1.0 / m}
    return a_scale * factor[a_scale_mode]


def draw_second_layer(m, k, rng, kind="signed", a_scale=1.0, a_scale_mode="constant"):
    r"""Initial second layer.

    With :math:`s` = :func:`second_layer_magnitude` ``(m, a_scale, a_scale_mode)``:

    - ``"signed"``: :math:`\pm s`, exactly ``floor(m k / 2)`` entries negative, at
      positions drawn uniformly (a random permutation); Polaczyk & Cyranka (TMLR).
    - ``"rademacher"``: :math:`\pm s` with independent fair signs.
    - ``"positive"``: :math:`s` everywhere (draws nothing).
    - ``"normal"``: :math:`N(0, s^2)`.
    - ``"uniform"``: :math:`U[-s, s]`.

    Parameters
    ----------
    m, k : int
        Width and number of outputs.
    rng : numpy.random.Generator
    kind : str
        One of :data:`SECOND_LAYERS`.
    a_scale : float
    a_scale_mode : {"constant", "inv_sqrt_m", "inv_m"}

    Returns
    -------
    a0 : ndarray, shape (m,) if ``k == 1`` else (m, k)
    """
    scale = second_layer_magnitude(m, a_scale, a_scale_mode)
    shape = (m,) if k == 1 else (m, k)
    size = m * k
    if kind == "signed":
        signs = np.ones(size)
        signs[rng.permutation(size)[: size // 2]] = -1.0
        return scale * signs.reshape(shape)
    if kind == "rademacher":
        return scale * rng.choice(np.array([-1.0, 1.0]), size=shape)
    if kind == "positive":
        return np.full(shape, scale)
    if kind == "normal":
        return scale * rng.standard_normal(shape)
    if kind == "uniform":
        return rng.uniform(-scale, scale, shape)
    raise ValueError(f"second_layer must be one of {SECOND_LAYERS}; got {kind!r}")


class _RandomInit(Init):
    """Base of the inits with a random first layer and the shared second layer."""

    def draw_first_layer(self, d, m, rng):
        """First layer ``W0`` ``(d, m)``."""
        raise NotImplementedError

    def initialize(self, d, m, k, rng):
        """``W0`` ``(d, m)`` from :meth:`draw_first_layer`, then ``a0`` (same ``rng``).

        Returns
        -------
        W0 : ndarray, shape (d, m)
        a0 : ndarray, shape (m,) if ``k == 1`` else (m, k)
        """
        W0 = self.draw_first_layer(d, m, rng)
        a0 = draw_second_layer(m, k, rng, self.second_layer, self.a_scale, self.a_scale_mode)
        return W0, a0


class NormalInit(_RandomInit):
    """Gaussian first layer: W0 entries iid N(0, scale^2).

    With ``scale = 1`` this is the ``w_r ~ N(0, I)`` of Du, Zhai, Poczos & Singh
    (ICLR 2019) and of Polaczyk & Cyranka (TMLR).
    """

    name = "normal"
    params = (
        Param("scale", float, 1.0, "standard deviation of the W0 entries", low=0),
    ) + SECOND_LAYER_PARAMS

    def draw_first_layer(self, d, m, rng):
        return self.scale * rng.standard_normal((d, m))


class UniformInit(_RandomInit):
    """Uniform first layer: W0 entries iid U[-scale, scale] (variance scale^2 / 3)."""

    name = "uniform"
    params = (Param("scale", float, 1.0, "bound of the W0 entries", low=0),) + SECOND_LAYER_PARAMS

    def draw_first_layer(self, d, m, rng):
        return rng.uniform(-self.scale, self.scale, (d, m))


class XavierInit(_RandomInit):
    r"""Glorot/Xavier Gaussian first layer, fan_in = d and fan_out = m.

    .. math::

        W_{ir} \sim N(0, \sigma^2), \qquad
        \sigma^2 = \mathrm{gain}^2 \cdot
        \begin{cases} 2 / (d + m) & \text{mode "fan_avg" (Glorot \& Bengio 2010)} \\
                      1 / d & \text{mode "fan_in"} \end{cases}

    ``mode="fan_in"`` on ``d = k`` inputs gives the N(0, 1/k) of Safran & Shamir's
    census (``ItaySafran/Overparameterization``); ``"fan_avg"`` matches torch's
    ``xavier_normal_`` on an ``nn.Linear(d, m)`` weight.
    """

    name = "xavier"
    params = (
        Param("gain", float, 1.0, "gain multiplying the standard deviation", low=0),
        Param(
            "mode",
            str,
            "fan_avg",
            "variance gain^2 * 2 / (d + m) ('fan_avg') or gain^2 / d ('fan_in')",
            choices=("fan_avg", "fan_in"),
        ),
    ) + SECOND_LAYER_PARAMS

    def variance(self, d, m):
        """Variance of the W0 entries for ``d`` inputs and ``m`` neurons."""
        if self.mode == "fan_in":
            return self.gain**2 / d
        return self.gain**2 * 2.0 / (d + m)

    def draw_first_layer(self, d, m, rng):
        return math.sqrt(self.variance(d, m)) * rng.standard_normal((d, m))


class GridInit(Init):
    r"""Neurons on a regular grid of the first-layer space: the (weight, bias) plane for
    1-D inputs with a bias, a ``d``-dimensional grid for ``d - 1``-dimensional inputs.

    Positions: ``grid = linspace(-extent, extent, per_axis)`` on each of the ``d``
    axes; position ``p = i * per_axis + j`` (row-major; in ``d`` dimensions the
    ``numpy.ravel_multi_index`` order) is the column ``(grid[i], grid[j])``, so the
    weight (row 0 of ``W0``, acting on x) varies slowest and the bias (the last row,
    acting on the constant column) fastest. (Gradient-Work's ``meshgrid`` order is the
    transpose: weight fastest.) ``P = per_axis**d`` positions in all.

    ``signs``:

    - ``"both"``: every position twice, first all ``P`` with ``a0 = +mass``, then the
      same ``P`` positions in the same order with ``a0 = -mass``; ``m = 2 P``. The
      JKO plugin relies on this layout (one measure per sign).
    - ``"random"``: one sign per position, +1 or -1 with equal probability from
      ``rng``; ``m = P``. Gradient-Work's default (``vmerckle/Gradient-Work``,
      ``configsGenModel.py``, mass 1 per position, total not normalised).
    - ``"positive"``: ``a0 = +mass`` everywhere; ``m = P``.

    ``per_axis = None`` derives it from the width ``m`` (``m = 2 per_axis^d`` for
    ``"both"``, else ``per_axis^d``); an explicit ``per_axis`` fixes the width and
    ``m`` is ignored. The second-layer options of the random inits do not apply.

    Raises
    ------
    ConfigError
        When ``d < 2``, ``k != 1`` or ``m`` is not of the form above.
    """

    name = "grid"
    params = (
        Param(
            "per_axis",
            int,
            None,
            "grid points per axis (None: derived from the width)",
            low=2,
            nullable=True,
        ),
        Param(
            "extent",
            float,
            1.0,
            "positions evenly spaced in [-extent, extent]^d",
            low=0,
            low_open=True,
        ),
        Param(
            "signs",
            str,
            "both",
            "both signs at every position, one random sign, or all positive",
            choices=("both", "random", "positive"),
        ),
        Param("mass", float, 1.0, "|a0| of every neuron", low=0, low_open=True),
    )

    def _copies(self):
        return 2 if self.signs == "both" else 1

    def _per_axis(self, m, d=2):
        if self.per_axis is not None:
            return self.per_axis
        copies = self._copies()
        side = round((m // copies) ** (1.0 / d))
        if m % copies or side**d * copies != m or side < 2:
            form = f"2 * per_axis**{d}" if copies == 2 else f"per_axis**{d}"
            examples = ", ".join(str(copies * s**d) for s in (2, 3, 4, 5))
            raise ConfigError(
                f"init (grid): width m={m} is not {form} for an integer per_axis >= 2 "
                f"(signs={self.signs!r}); use a width such as {examples}, or set init.per_axis"
            )
        return side

    def positions(self, per_axis, d=2):
        """Grid positions as columns.

        Returns
        -------
        positions : ndarray, shape (d, per_axis**d)
            Column ``i * per_axis + j`` is ``(grid[i], grid[j])`` for ``d = 2``; in
            general column ``ravel_multi_index((i_1, ..., i_d))`` is
            ``(grid[i_1], ..., grid[i_d])``.
        """
        grid = np.linspace(-self.extent, self.extent, per_axis)
        mesh = np.meshgrid(*([grid] * d), indexing="ij")
        return np.stack([axis.ravel() for axis in mesh])

    def initialize(self, d, m, k, rng):
        """Grid first layer and signed masses.

        Parameters
        ----------
        d : int
            At least 2 (``d - 1`` features and the bias column).
        m : int
            Width hint; see the class docstring.
        k : int
            Must be 1.
        rng : numpy.random.Generator
            Used only by ``signs="random"``.

        Returns
        -------
        W0 : ndarray, shape (d, m)
        a0 : ndarray, shape (m,)
        """
        if d < 2:
            raise ConfigError(f"init (grid) needs d >= 2 (inputs with a bias column); got d={d}")
        if k != 1:
            raise ConfigError(f"init (grid) supports one output (k == 1); got k={k}")
        positions = self.positions(self._per_axis(m, d), d)
        n_positions = positions.shape[1]
        if self.signs == "both":
            W0 = np.hstack([positions, positions])
            signs = np.concatenate([np.ones(n_positions), -np.ones(n_positions)])
        elif self.signs == "random":
            W0 = positions
            signs = rng.choice(np.array([-1.0, 1.0]), size=n_positions)
        else:
            W0 = positions
            signs = np.ones(n_positions)
        return W0, self.mass * signs


@hookimpl
def relulab_inits():
    return [NormalInit, UniformInit, XavierInit, GridInit]
