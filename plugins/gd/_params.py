"""The parameters of the gradient-descent family, declared once.

``gd`` (torch) and ``gd_numpy`` share :data:`COMMON_PARAMS` (the optimizers, also used by
``proxpoint``) and :data:`DYNAMICS_PARAMS` (minibatches and the step-size schedule); ``gd``
adds :data:`TORCH_PARAMS` (device and how the gradient is computed).
"""

from dataclasses import dataclass

from core.errors import ConfigError
from core.params import Param

__all__ = [
    "OPTIMIZERS",
    "TRAINED",
    "DTYPES",
    "SCHEDULES",
    "GRADIENTS",
    "COMMON_PARAMS",
    "DYNAMICS_PARAMS",
    "TORCH_PARAMS",
    "check_dynamics",
]

OPTIMIZERS = ("sgd", "momentum", "adamw")
TRAINED = ("both", "first")
DTYPES = ("float32", "float64")
SCHEDULES = ("constant", "step")
GRADIENTS = ("autograd", "closed_form", "gram")


@dataclass(frozen=True)
class _UnitPair(Param):
    """A list of exactly two floats in [0, 1) (AdamW's betas)."""

    def allowed(self):
        return "a list of two floats in [0, 1)"

    def check(self, owner, value):
        value = super().check(owner, value)
        if len(value) != 2 or not all(0.0 <= b < 1.0 for b in value):
            raise ConfigError(f"{owner}.{self.name} must be {self.allowed()}; got {value!r}")
        return value


COMMON_PARAMS = (
    Param(
        "optimizer",
        str,
        "sgd",
        "sgd: plain GD; momentum: heavy ball (torch's SGD momentum); adamw: torch's AdamW",
        choices=OPTIMIZERS,
    ),
    Param("lr", float, 0.01, "learning rate (step size)", low=0, low_open=True, resume_safe=True),
    Param(
        "momentum",
        float,
        0.9,
        "momentum coefficient (optimizer='momentum')",
        low=0,
        high=1,
        low_open=True,
        high_open=True,
    ),
    Param("nesterov", bool, False, "Nesterov variant of momentum (optimizer='momentum')"),
    Param(
        "weight_decay",
        float,
        0.0,
        "L2 term added to the gradient (sgd, momentum) or decoupled decay (adamw)",
        low=0,
    ),
    _UnitPair(
        "betas", list, [0.9, 0.999], "AdamW moment coefficients (beta1, beta2)", item_type=float
    ),
    Param("eps", float, 1e-8, "AdamW denominator epsilon", low=0),
    Param(
        "train", str, "both", "both: train W and a; first: train W, keep a fixed", choices=TRAINED
    ),
    Param(
        "dtype",
        str,
        "float64",
        "floating-point precision of the parameters and data",
        choices=DTYPES,
    ),
)

TORCH_PARAMS = (
    Param("device", str, "cpu", "torch device", choices=("cpu", "cuda")),
    Param(
        "gradient",
        str,
        "autograd",
        "autograd: torch autograd; closed_form: the closed-form gradient of core.model_torch; "
        "gram: the NTK fast path (full batch, sgd or momentum; see plugins.gd._gram)",
        choices=GRADIENTS,
    ),
    Param(
        "gram_refresh",
        int,
        200,
        "gradient='gram': recompute Z = X W exactly from W every this many steps",
        low=1,
    ),
)

DYNAMICS_PARAMS = (
    Param(
        "batch_size",
        int,
        None,
        "points per step, reshuffled (from the seed) every epoch; None: full batch",
        low=1,
        nullable=True,
    ),
    Param(
        "lr_schedule",
        str,
        "constant",
        "constant: lr throughout; step: lr * lr_gamma^(number of lr_milestones <= step)",
        choices=SCHEDULES,
    ),
    Param(
        "lr_milestones",
        list,
        [],
        "lr_schedule='step': increasing step counts at which lr is multiplied by lr_gamma",
        item_type=int,
    ),
    Param(
        "lr_gamma",
        float,
        0.1,
        "lr_schedule='step': the decay factor",
        low=0,
        low_open=True,
    ),
)


def check_dynamics(params, owner="algorithm"):
    """Cross-parameter checks of :data:`DYNAMICS_PARAMS` and ``gradient='gram'``.

    Raises a one-line :class:`ConfigError` naming the key.
    """
    milestones = params.get("lr_milestones", [])
    if any(s < 1 for s in milestones) or any(b <= a for a, b in zip(milestones, milestones[1:])):
        raise ConfigError(
            f"{owner}.lr_milestones must be strictly increasing positive step counts; "
            f"got {milestones!r}"
        )
    if params.get("lr_schedule") == "step" and not milestones:
        raise ConfigError(
            f"{owner}.lr_milestones must not be empty when {owner}.lr_schedule='step'"
        )
    if params.get("gradient") == "gram":
        if params["optimizer"] not in ("sgd", "momentum"):
            raise ConfigError(
                f"{owner}.gradient='gram' needs {owner}.optimizer in {{'sgd', 'momentum'}}; "
                f"got {params['optimizer']!r}"
            )
        if params.get("batch_size") is not None:
            raise ConfigError(
                f"{owner}.gradient='gram' needs full batches ({owner}.batch_size=None); "
                f"got {params['batch_size']!r}"
            )
